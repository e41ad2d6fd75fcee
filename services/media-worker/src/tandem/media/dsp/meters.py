"""Per-call-direction audio meters: level, peak, clipping, noise floor, SNR and talk time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import numpy.typing as npt

from tandem.media.dsp._fft import Real
from tandem.media.dsp._jit import FASTMATH

CLIP_LEVEL = 0.999
"""A sample at or above this magnitude (normalized full scale 1.0) counts as clipped."""

METER_STATE = np.dtype(
    [
        ("level", np.float64),  # smoothed mean square, all frames,
        ("speech", np.float64),  # smoothed mean square, speech frames,
        ("peak", np.float64),  # largest sample since the last reading,
        ("clipped", np.int64),  # clipped samples, total,
        ("samples", np.int64),  # samples metered,
        ("talk_frames", np.int64),  # speech frames,
        ("frames", np.int64),  # frames metered
    ]
)
"""The state of one call direction (one record)."""

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
        self.state = np.zeros(1, dtype=METER_STATE)

    def process(self, signal: Real, speech: bool) -> None:
        """Meter one frame; ``speech`` is the VAD decision for it."""
        meter_frame(signal, speech, self.state)

    def reading(self, noise_floor_dbfs: float) -> MeterReading:
        """The current values, with the noise floor tracked by the suppressor; resets the peak."""
        s = self.state[0]
        speech_db = 10.0 * math.log10(s["speech"] + 1e-12)
        reading = MeterReading(
            level_dbfs=10.0 * math.log10(s["level"] + 1e-12),
            speech_level_dbfs=speech_db,
            peak_dbfs=20.0 * math.log10(s["peak"] + 1e-12),
            clipped_ratio=float(s["clipped"]) / max(int(s["samples"]), 1),
            noise_floor_dbfs=noise_floor_dbfs,
            snr_db=speech_db - noise_floor_dbfs,
            talk_time_s=float(s["talk_frames"]) * 0.01,
        )
        s["peak"] = 0.0
        return reading


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def meter_frame(signal: Real, speech: bool, state: npt.NDArray[np.void]) -> None:
    """Accumulate one frame into the meter state."""
    s = state[0]
    ms = 0.0
    peak = s.peak
    clipped = 0
    for i in range(signal.shape[0]):
        a = abs(signal[i])
        ms += a * a
        peak = max(peak, a)
        if a >= CLIP_LEVEL:
            clipped += 1
    ms /= signal.shape[0]
    s.peak = peak
    s.clipped += clipped
    s.samples += signal.shape[0]
    s.frames += 1
    s.level += _SMOOTHING * (ms - s.level)
    if speech:
        s.talk_frames += 1
        s.speech += _SMOOTHING * (ms - s.speech)
