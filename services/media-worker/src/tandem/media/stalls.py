"""Stalls in a stream of frame arrivals: video freezes (W3C webrtc-stats) and audio gaps.

Pure bookkeeping over arrival instants (seconds, any monotonic clock); no I/O.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass

FREEZE_WINDOW_FRAMES = 30
"""The mean frame interval is taken over this many previous intervals (webrtc-stats)."""
FREEZE_MIN_INCREASE_S = 0.150
FREEZE_MIN_INTERVALS = 5
"""Intervals needed before the mean means anything (libwebrtc's minimum)."""
AUDIO_GAP_S = 0.200


@dataclass(frozen=True, slots=True)
class StallCounts:
    """Cumulative counts since the stream began: frames, stalls and their summed length (s)."""

    frames: int = 0
    stalls: int = 0
    stall_s: float = 0.0

    def __sub__(self, earlier: StallCounts) -> StallCounts:
        return StallCounts(self.frames - earlier.frames, self.stalls - earlier.stalls, self.stall_s - earlier.stall_s)


class _Arrivals(abc.ABC):
    """Counts frames and the intervals a subclass judges to be stalls."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._frames = 0
        self._stalls = 0
        self._stall_s = 0.0

    @property
    def counts(self) -> StallCounts:
        return StallCounts(self._frames, self._stalls, self._stall_s)

    def arrived(self, at_s: float) -> None:
        """A frame arrived at `at_s`; an arrival earlier than the previous one counts as simultaneous."""
        self._frames += 1
        last = self._last
        if last is None or at_s > last:
            self._last = at_s
        if last is not None:
            interval = max(0.0, at_s - last)
            if self._is_stall(interval):
                self._stalls += 1
                self._stall_s += interval

    @abc.abstractmethod
    def _is_stall(self, interval_s: float) -> bool: ...


class FreezeDetector(_Arrivals):
    """Video freezes as webrtc-stats defines `freezeCount` and `totalFreezesDuration`: an interval
    between frames of at least max(3 x mean, mean + 150 ms), the mean over the previous 30 intervals."""

    def __init__(self) -> None:
        super().__init__()
        self._intervals: deque[float] = deque(maxlen=FREEZE_WINDOW_FRAMES)

    def _is_stall(self, interval_s: float) -> bool:
        frozen = False
        if len(self._intervals) >= FREEZE_MIN_INTERVALS:
            mean = sum(self._intervals) / len(self._intervals)
            frozen = interval_s >= max(3.0 * mean, mean + FREEZE_MIN_INCREASE_S)
        self._intervals.append(interval_s)
        return frozen


class AudioGapDetector(_Arrivals):
    """Audio gaps: an interval between received audio frames longer than 200 ms."""

    def _is_stall(self, interval_s: float) -> bool:
        return interval_s > AUDIO_GAP_S
