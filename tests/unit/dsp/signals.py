"""Test signals for the DSP tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
