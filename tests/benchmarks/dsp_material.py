"""Deterministic test material for the call-audio benchmark: speech, rooms, noise, echo scenes.

Speech comes from Debian packages (``codec2-examples`` ships a natural 16 kHz recording, ``espeak-ng``
speaks other voices and sentences); rooms from ``pyroomacoustics``; noise from a seeded generator.
Everything is float64 at normalized full scale 1.0.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyroomacoustics as pra
import soundfile as sf
from scipy.signal import resample_poly

Signal = npt.NDArray[np.float64]

CODEC2_SPEECH = Path("/usr/share/codec2/raw/speech_orig_16k.wav")
NEAR_SENTENCES = (
    "Could you show me the blue one again, a little closer to the camera please.",
    "I think the medium size would fit me, but what about the return policy?",
    "That looks lovely. How long would shipping take to my city?",
    "Can I pay in my own currency, and is there a discount for two?",
)


def _level(x: Signal, dbfs: float) -> Signal:
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    return x * (10.0 ** (dbfs / 20.0) / rms)


def _resample(x: Signal, rate_in: int, rate_out: int) -> Signal:
    g = np.gcd(rate_in, rate_out)
    return np.asarray(resample_poly(x, rate_out // g, rate_in // g), dtype=np.float64)


@cache
def far_speech(rate: int) -> Signal:
    """The natural recording shipped by codec2-examples (10.8 s), twice, at ``rate`` Hz, -26 dBFS."""
    x, sr = sf.read(CODEC2_SPEECH, dtype="float64")
    x = _resample(np.concatenate([x, x]), sr, rate)
    return _level(x, -26.0)


@cache
def near_speech(rate: int) -> Signal:
    """A female espeak-ng voice saying other sentences, with pauses, at ``rate`` Hz, -26 dBFS."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "near.wav"
        text = " ... ".join(NEAR_SENTENCES)
        subprocess.run([espeak, "-v", "en-us+f3", "-s", "150", "-w", str(wav), text], check=True)
        x, sr = sf.read(wav, dtype="float64")
    return _level(_resample(x, sr, rate), -26.0)


@cache
def room_response(rate: int, rt60_s: float = 0.25) -> Signal:
    """Loudspeaker-to-microphone impulse response of a furnished 5x4x3 m room (seeded geometry)."""
    room_dim = [5.0, 4.0, 3.0]
    absorption, max_order = pra.inverse_sabine(rt60_s, room_dim)
    room = pra.ShoeBox(room_dim, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source([1.2, 1.5, 1.1])
    room.add_microphone([1.6, 1.9, 1.2])
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir[: int(0.4 * rate)]


def pink_noise(n: int, seed: int) -> Signal:
    """Pink (1/f) noise of ``n`` samples, unit RMS."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / np.sqrt(np.mean(x**2))


@dataclass(frozen=True)
class EchoScene:
    """One echo scene: ``mic`` = ``echo`` + ``near`` + noise, ``far`` = what the worker forwarded."""

    far: Signal
    mic: Signal
    echo: Signal
    near: Signal


def echo_scene(
    rate: int, delay_ms: float, double_talk: bool, delay_jump_ms: float | None = None, seed: int = 1
) -> EchoScene:
    """Far-end speech echoed through the room after ``delay_ms`` (-6 dB echo return loss).

    With ``double_talk`` the near-end talker speaks over the second half; with ``delay_jump_ms`` the
    bulk delay jumps to that value at the middle of the scene.
    """
    far = far_speech(rate)
    n = far.shape[0]
    echo_full = np.convolve(far, room_response(rate))[:n]
    echo_full = _level(echo_full, -32.0)
    echo = np.zeros(n)
    d0 = int(delay_ms * rate / 1000)
    echo[d0:] = echo_full[: n - d0]
    if delay_jump_ms is not None:
        half = n // 2
        d1 = int(delay_jump_ms * rate / 1000)
        echo[half:] = 0.0
        echo[half + d1 :] = echo_full[half : n - d1]
    near = np.zeros(n)
    if double_talk:
        speech = near_speech(rate)
        start = n // 2
        length = min(speech.shape[0], n - start)
        near[start : start + length] = speech[:length]
    noise = _level(pink_noise(n, seed), -65.0)
    return EchoScene(far=far, mic=echo + near + noise, echo=echo, near=near)


def noisy_speech(rate: int, snr_db: float, seed: int = 2) -> tuple[Signal, Signal]:
    """(clean, noisy): the codec2 recording plus pink noise at ``snr_db`` (speech-active RMS)."""
    clean = far_speech(rate)[: int(10.8 * rate)]
    noise = pink_noise(clean.shape[0], seed)
    active = np.abs(clean) > 0.01 * np.max(np.abs(clean))
    speech_rms = float(np.sqrt(np.mean(clean[active] ** 2)))
    noise = noise * speech_rms / 10.0 ** (snr_db / 20.0)
    return clean, clean + noise


def vad_labels(speech: Signal, rate: int) -> npt.NDArray[np.bool_]:
    """Per-10 ms-frame speech labels of a clean signal: frame energy within 30 dB of its peak frames."""
    frame = rate // 100
    frames = speech[: speech.shape[0] // frame * frame].reshape(-1, frame)
    energy = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return np.asarray(energy > np.percentile(energy, 95) - 30.0)
