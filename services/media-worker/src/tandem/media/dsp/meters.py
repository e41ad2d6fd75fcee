"""Per-call-direction audio meters: level, peak, clipping, noise floor, SNR and talk time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from tandem.media.dsp._fft import Real

CLIP_LEVEL = 0.999
"""A sample at or above this magnitude (normalized full scale 1.0) counts as clipped."""

# Indices into AudioMeters.scalars.
_LEVEL = 0  # smoothed mean square, all frames
_SPEECH = 1  # smoothed mean square, speech frames
_PEAK = 2
_CLIPPED = 3  # clipped samples, total
_SAMPLES = 4
_TALK_FRAMES = 5
_FRAMES = 6
_NSCALARS = 7

_SMOOTHING = 0.05


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A snapshot: ``level_dbfs`` and ``speech_level_dbfs`` (RMS, dB re full scale), ``peak_dbfs``
    (largest sample since the last reading), ``clipped_ratio`` (share of clipped samples),
    ``noise_floor_dbfs``, ``snr_db`` (speech level over noise floor), ``talk_time_s``."""

    level_dbfs: float
    speech_level_dbfs: float
    peak_dbfs: float
    clipped_ratio: float
    noise_floor_dbfs: float
    snr_db: float
    talk_time_s: float


class AudioMeters:
    """Accumulates meter values over 10 ms frames of one call direction."""

    def __init__(self) -> None:
        self.scalars: Real = np.zeros(_NSCALARS)

    def process(self, signal: Real, speech: bool) -> None:
        """Meter one frame; ``speech`` is the VAD decision for it."""
        meter_frame(signal, speech, self.scalars)

    def reading(self, noise_floor_dbfs: float) -> MeterReading:
        """The current values, with the noise floor tracked by the suppressor; resets the peak."""
        s = self.scalars
        speech_db = 10.0 * math.log10(s[_SPEECH] + 1e-12)
        reading = MeterReading(
            level_dbfs=10.0 * math.log10(s[_LEVEL] + 1e-12),
            speech_level_dbfs=speech_db,
            peak_dbfs=20.0 * math.log10(s[_PEAK] + 1e-12),
            clipped_ratio=float(s[_CLIPPED] / max(s[_SAMPLES], 1.0)),
            noise_floor_dbfs=noise_floor_dbfs,
            snr_db=speech_db - noise_floor_dbfs,
            talk_time_s=float(s[_TALK_FRAMES]) * 0.01,
        )
        s[_PEAK] = 0.0
        return reading


@nb.njit(cache=True, fastmath=True)
def meter_frame(signal: Real, speech: bool, s: Real) -> None:
    """Accumulate one frame into the meter state ``s``."""
    ms = 0.0
    peak = s[_PEAK]
    clipped = 0
    for i in range(signal.shape[0]):
        a = abs(signal[i])
        ms += a * a
        peak = max(peak, a)
        if a >= CLIP_LEVEL:
            clipped += 1
    ms /= signal.shape[0]
    s[_PEAK] = peak
    s[_CLIPPED] += clipped
    s[_SAMPLES] += signal.shape[0]
    s[_FRAMES] += 1
    s[_LEVEL] += _SMOOTHING * (ms - s[_LEVEL])
    if speech:
        s[_TALK_FRAMES] += 1
        s[_SPEECH] += _SMOOTHING * (ms - s[_SPEECH])
