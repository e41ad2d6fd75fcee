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
import numpy.typing as npt

from tandem.media.dsp._fft import Real
from tandem.media.dsp._jit import FASTMATH

AGC_STATE = np.dtype(
    [
        ("level", np.float64),  # smoothed speech mean square,
        ("gain", np.float64),  # current AGC gain, linear,
        ("limit", np.float64),  # current limiter gain, linear
    ]
)
"""The state of one call direction (one record)."""

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
        self.state = np.zeros(1, dtype=AGC_STATE)
        self.state[0]["level"] = self.target
        self.state[0]["gain"] = 1.0
        self.state[0]["limit"] = 1.0

    def process(self, signal: Real, out: Real, speech: bool) -> None:
        """Apply gain to one frame; ``speech`` says whether the frame is voice-active."""
        control_frame(
            signal, out, speech, self.state, self.target, self.max_gain, self.min_gain, self.slew,
            self.ceiling,
        )  # fmt: skip

    @property
    def gain_db(self) -> float:
        """The AGC gain currently applied, in dB (limiter excluded)."""
        return 20.0 * math.log10(float(self.state[0]["gain"]))


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def control_frame(
    signal: Real, out: Real, speech: bool, state: npt.NDArray[np.void], target: float, max_gain: float,
    min_gain: float, slew: float, ceiling: float,
) -> None:  # fmt: skip
    """One frame of AGC and limiter; see :meth:`GainControl.process`."""
    s = state[0]
    frame = signal.shape[0]
    if speech:
        ms = 0.0
        for i in range(frame):
            ms += signal[i] * signal[i]
        s.level += _LEVEL_SMOOTHING * (ms / frame - s.level)
    desired = min(max(math.sqrt(target / (s.level + 1e-12)), min_gain), max_gain)
    start = s.gain
    end = min(max(desired, start / slew), start * slew)
    s.gain = end
    peak = 0.0
    for i in range(frame):
        g = start + (end - start) * (i + 1) / frame
        out[i] = signal[i] * g
        peak = max(peak, abs(out[i]))
    wanted = min(1.0, ceiling / (peak + 1e-12))
    limit = s.limit
    limit = wanted if wanted < limit else limit + _LIMITER_RELEASE * (wanted - limit)
    s.limit = limit
    for i in range(frame):
        out[i] = min(max(out[i] * limit, -1.0), 1.0)
