"""Automatic gain control toward a target speech level, followed by a peak limiter.

The speech level is a smoothed mean square over voice-active frames only, so pauses and noise do
not pull the gain up; the gain moves at a bounded slew rate (dB per second) and is interpolated
across each frame. The limiter holds the output peak under ``ceiling_dbfs`` with instant attack and
exponential release, and a final clamp keeps every sample within full scale.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from tandem.media.dsp._fft import Real

# Indices into GainControl.scalars.
_LEVEL = 0  # smoothed speech mean square
_GAIN = 1  # current AGC gain, linear
_LIMIT = 2  # current limiter gain, linear
_NSCALARS = 3

_LEVEL_SMOOTHING = 0.05
_LIMITER_RELEASE = 0.05


class GainControl:
    """Per-call-direction AGC and limiter.

    ``target_dbfs`` the speech RMS level to reach (dB re full scale), ``max_gain_db`` and
    ``min_gain_db`` the gain range, ``slew_db_per_s`` how fast the gain may move, ``ceiling_dbfs``
    the limiter's peak ceiling.
    """

    def __init__(
        self,
        target_dbfs: float = -23.0,
        max_gain_db: float = 30.0,
        min_gain_db: float = -12.0,
        slew_db_per_s: float = 12.0,
        ceiling_dbfs: float = -1.0,
    ) -> None:
        self.target = 10.0 ** (target_dbfs / 10.0)
        self.max_gain = 10.0 ** (max_gain_db / 20.0)
        self.min_gain = 10.0 ** (min_gain_db / 20.0)
        self.slew = 10.0 ** (slew_db_per_s / 100.0 / 20.0)  # per 10 ms frame
        self.ceiling = 10.0 ** (ceiling_dbfs / 20.0)
        self.scalars: Real = np.zeros(_NSCALARS)
        self.scalars[_LEVEL] = self.target
        self.scalars[_GAIN] = 1.0
        self.scalars[_LIMIT] = 1.0

    def process(self, signal: Real, out: Real, speech: bool) -> None:
        """Apply gain to one frame; ``speech`` says whether the frame is voice-active."""
        control_frame(
            signal, out, speech, self.scalars, self.target, self.max_gain, self.min_gain, self.slew,
            self.ceiling,
        )  # fmt: skip

    @property
    def gain_db(self) -> float:
        """The AGC gain currently applied, in dB (limiter excluded)."""
        return 20.0 * math.log10(self.scalars[_GAIN])


@nb.njit(cache=True, fastmath=True)
def control_frame(
    signal: Real, out: Real, speech: bool, s: Real, target: float, max_gain: float,
    min_gain: float, slew: float, ceiling: float,
) -> None:  # fmt: skip
    """One frame of AGC and limiter; see :meth:`GainControl.process`."""
    frame = signal.shape[0]
    if speech:
        ms = 0.0
        for i in range(frame):
            ms += signal[i] * signal[i]
        s[_LEVEL] += _LEVEL_SMOOTHING * (ms / frame - s[_LEVEL])
    desired = min(max(math.sqrt(target / (s[_LEVEL] + 1e-12)), min_gain), max_gain)
    start = s[_GAIN]
    end = min(max(desired, start / slew), start * slew)
    s[_GAIN] = end
    peak = 0.0
    for i in range(frame):
        g = start + (end - start) * (i + 1) / frame
        out[i] = signal[i] * g
        peak = max(peak, abs(out[i]))
    wanted = min(1.0, ceiling / (peak + 1e-12))
    limit = s[_LIMIT]
    limit = wanted if wanted < limit else limit + _LIMITER_RELEASE * (wanted - limit)
    s[_LIMIT] = limit
    for i in range(frame):
        out[i] = min(max(out[i] * limit, -1.0), 1.0)
