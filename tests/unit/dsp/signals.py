"""Test signals for the DSP tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

Signal = npt.NDArray[np.float64]


def talker(seconds: float, seed: int, rate: int = 16000, rolloff_hz: float | None = None) -> Signal:
    """Speech-like signal at ``rate`` Hz: coloured noise in syllables of random length, level and
    spacing, with phrase pauses; about -26 dBFS. With ``rolloff_hz`` its spectrum also falls by 6 dB
    an octave above that, as voiced speech does."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    noise = rng.standard_normal(n)
    shape = 1.0 / np.sqrt(1.0 + np.arange(n // 2 + 1) / (n / 16))
    if rolloff_hz is not None:
        shape /= 1.0 + np.arange(n // 2 + 1) * rate / n / rolloff_hz
    coloured = np.fft.irfft(np.fft.rfft(noise) * shape, n)
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.08, 0.25) * rate)
        envelope[pos : pos + length] = rng.uniform(0.3, 1.0) * np.hanning(length)[: n - pos]
        pos += length + int(rng.uniform(0.02, 0.15) * rate)
        if rng.random() < 0.1:
            pos += int(rng.uniform(0.3, 0.8) * rate)
    x = coloured * envelope
    return np.asarray(x * 0.05 / np.sqrt(np.mean(x**2)), dtype=np.float64)


def si_sdr(ref: Signal, est: Signal) -> float:
    """Scale-invariant signal-to-distortion ratio of ``est`` against ``ref`` (dB)."""
    scale = float(np.dot(est, ref) / np.dot(ref, ref))
    target = scale * ref
    return float(10.0 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


@cache
def espeak(voice: str, text: str, speed_wpm: int = 175) -> tuple[Signal, int]:
    """`text` said by an espeak-ng voice (Debian ``espeak-ng``): the samples and their rate."""
    program = shutil.which("espeak-ng")
    if program is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spoken.wav"
        subprocess.run([program, "-v", voice, "-s", str(speed_wpm), "-w", str(path), text], check=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            x = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64) / 32768.0
    return x, rate


def spoken(voice: str, text: str, rate: int) -> Signal:
    """`text` said by an espeak-ng voice at ``rate`` Hz, about -26 dBFS."""
    x, made_at = espeak(voice, text)
    g = np.gcd(made_at, rate)
    y = resample_poly(x, rate // g, made_at // g)
    return np.asarray(y * 0.05 / np.sqrt(np.mean(y**2)), dtype=np.float64)
