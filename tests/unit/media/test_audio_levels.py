"""Levels and talk time from the RFC 6464 audio-level header extension of received packets."""

from __future__ import annotations

import pytest

from tandem.media.rtpstats import AudioLevels

pytestmark = pytest.mark.unit

PACKET = 960  # 20 ms at 48 kHz


def feed(levels: AudioLevels, packets: list[tuple[bool, int]], first_timestamp: int = 1000) -> AudioLevels:
    for i, (voiced, level) in enumerate(packets):
        levels.add((first_timestamp + i * PACKET) % 2**32, voiced, level)
    return levels


def test_a_sender_without_vad_talks_when_loud_enough() -> None:
    levels = feed(AudioLevels(48_000, -50.0), [(False, 20)] * 51 + [(False, 70)] * 50)
    assert levels.talk_s == pytest.approx(1.0)  # the first packet has no duration yet
    assert levels.packets == 101
    assert levels.power / levels.packets == pytest.approx((51 * 1e-2 + 50 * 1e-7) / 101)  # -20 and -70 dBov


def test_a_sender_with_vad_talks_when_it_says_so_from_its_first_mark_on() -> None:
    loud_unmarked, marked, loud_unmarked_after = [(False, 20)] * 11, [(True, 60)] * 10, [(False, 20)] * 10
    levels = feed(AudioLevels(48_000, -50.0), loud_unmarked + marked + loud_unmarked_after)
    assert levels.talk_s == pytest.approx(0.2 + 0.2)  # 10 loud before any mark, then the 10 marked


def test_durations_follow_rtp_timestamps_across_wraparound_and_skip_gaps() -> None:
    levels = feed(AudioLevels(48_000, -50.0), [(True, 30)] * 11, first_timestamp=2**32 - 5 * PACKET)
    assert levels.talk_s == pytest.approx(0.2)
    levels.add((2**32 - 5 * PACKET + 10 * PACKET + 48_000) % 2**32, True, 30)  # a second later: a gap
    assert levels.talk_s == pytest.approx(0.2)
