"""Video freezes as webrtc-stats defines them, and audio gaps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.media.stalls import AudioGapDetector, FreezeDetector, StallCounts

pytestmark = pytest.mark.unit


def feed(detector: FreezeDetector | AudioGapDetector, intervals: list[float], start: float = 100.0) -> StallCounts:
    for at in itertools.accumulate(intervals, initial=start):
        detector.arrived(at)
    return detector.counts


def test_steady_30_fps_never_freezes() -> None:
    assert feed(FreezeDetector(), [1 / 30] * 300) == StallCounts(frames=301, stalls=0, stall_s=0.0)


def test_a_one_second_stall_is_one_freeze_of_its_length() -> None:
    counts = feed(FreezeDetector(), [1 / 30] * 60 + [1.0] + [1 / 30] * 60)
    assert counts.stalls == 1
    assert counts.stall_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("fps", "gap_s", "frozen"),
    [
        (30, 0.182, False),  # threshold max(3 x 33 ms, 33 + 150 ms) = 183 ms
        (30, 0.185, True),
        (5, 0.590, False),  # threshold max(3 x 200 ms, 200 + 150 ms) = 600 ms
        (5, 0.610, True),
    ],
)
def test_the_threshold_is_the_larger_of_three_means_and_mean_plus_150_ms(fps: int, gap_s: float, frozen: bool) -> None:
    assert feed(FreezeDetector(), [1 / fps] * 40 + [gap_s]).stalls == int(frozen)


def test_the_mean_is_over_the_last_30_intervals() -> None:
    # A 10 s interval still in the window lifts the threshold above 1 s; 30 intervals later it is gone.
    assert feed(FreezeDetector(), [10.0] * 40 + [1 / 30] * 29 + [0.5]).stalls == 0
    assert feed(FreezeDetector(), [10.0] * 40 + [1 / 30] * 30 + [0.5]).stalls == 1


def test_no_freeze_before_five_intervals_give_a_mean() -> None:
    assert feed(FreezeDetector(), [1 / 30] * 3 + [2.0]).stalls == 0


def test_audio_gaps_are_intervals_over_200_ms() -> None:
    counts = feed(AudioGapDetector(), [0.02] * 10 + [0.199] + [0.02] * 5 + [0.5] + [0.02])
    assert counts.stalls == 1
    assert counts.stall_s == pytest.approx(0.5)


def test_an_arrival_out_of_order_is_no_negative_interval() -> None:
    detector = AudioGapDetector()
    for at in (10.0, 9.0, 9.5, 10.01):
        detector.arrived(at)
    assert detector.counts == StallCounts(frames=4, stalls=0, stall_s=0.0)


intervals = st.lists(st.floats(min_value=0.0, max_value=3.0, allow_nan=False), max_size=200)


@given(intervals)
def test_freezes_are_at_least_150_ms_and_never_longer_than_the_stream(gaps: list[float]) -> None:
    counts = feed(FreezeDetector(), gaps)
    assert counts.frames == len(gaps) + 1
    assert counts.stalls <= max(0, len(gaps) - 5)
    assert counts.stalls * 0.150 <= counts.stall_s + 1e-9
    assert counts.stall_s <= sum(gaps) + 1e-9


@given(intervals, st.floats(min_value=-1e6, max_value=1e6))
def test_when_the_stream_began_does_not_matter(gaps: list[float], offset: float) -> None:
    a, b = feed(FreezeDetector(), gaps, 1000.0), feed(FreezeDetector(), gaps, 1000.0 + offset)
    assert (a.frames, a.stalls) == (b.frames, b.stalls)
    assert a.stall_s == pytest.approx(b.stall_s, abs=1e-6)
