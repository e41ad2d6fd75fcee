"""Voice activity detection from the frame energy above a tracked noise floor.

The signal is pre-emphasized (speech carries energy above 1 kHz that low-frequency noise does not),
the noise floor follows the frame energy down at once and up slowly (minimum tracking), and a frame is
speech when it stands ``threshold_db`` above the floor; a hangover bridges the gaps between syllables.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from tandem.media.dsp._fft import Real

# Indices into VoiceActivityDetector.scalars.
_FLOOR_DB = 0
_PREV = 1  # last input sample, for pre-emphasis across frames
_HANG = 2  # frames of hangover left
_SNR_DB = 3
_STARTED = 4
_NSCALARS = 5

_PREEMPHASIS = 0.9
_FLOOR_RISE_DB = 0.03
"""How fast the floor may rise, per 10 ms frame (3 dB/s), so it climbs out of a quiet start."""
_FLOOR_FALL = 0.3
_SILENCE_DB = -90.0


class VoiceActivityDetector:
    """Per-call-direction VAD; ``threshold_db`` above the floor means speech, ``hangover_frames``
    (10 ms each) keep the decision up after the last speech frame."""

    def __init__(self, threshold_db: float = 9.0, hangover_frames: int = 12) -> None:
        self.threshold_db = threshold_db
        self.hangover_frames = hangover_frames
        self.scalars: Real = np.zeros(_NSCALARS)

    def process(self, signal: Real) -> bool:
        """Classify one frame; True when it holds speech."""
        return bool(detect_frame(signal, self.scalars, self.threshold_db, self.hangover_frames))

    @property
    def noise_floor_db(self) -> float:
        """Tracked noise floor of the pre-emphasized signal, dB re full-scale mean square."""
        return float(self.scalars[_FLOOR_DB])

    @property
    def snr_db(self) -> float:
        """Energy of the last frame above the floor, dB."""
        return float(self.scalars[_SNR_DB])


@nb.njit(cache=True, fastmath=True)
def detect_frame(signal: Real, s: Real, threshold_db: float, hangover: int) -> bool:
    """One frame of the VAD; see :meth:`VoiceActivityDetector.process`."""
    prev = s[_PREV]
    energy = 0.0
    for i in range(signal.shape[0]):
        e = signal[i] - _PREEMPHASIS * prev
        prev = signal[i]
        energy += e * e
    s[_PREV] = prev
    level = max(10.0 * math.log10(energy / signal.shape[0] + 1e-30), _SILENCE_DB)
    if s[_STARTED] == 0.0:
        s[_FLOOR_DB] = level
        s[_STARTED] = 1.0
    floor = s[_FLOOR_DB]
    floor = floor + _FLOOR_FALL * (level - floor) if level < floor else floor + _FLOOR_RISE_DB
    s[_FLOOR_DB] = floor
    snr = level - floor
    s[_SNR_DB] = snr
    if snr > threshold_db and level > _SILENCE_DB + threshold_db:
        s[_HANG] = hangover
        return True
    if s[_HANG] > 0:
        s[_HANG] -= 1
        return True
    return False
