"""Frames out of a forwarded video stream: only whole frames, in order, each the sender's packets;
after a frame that cannot be repaired, nothing until a keyframe."""

from __future__ import annotations

import itertools

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.media.assembler import AssemblerState, FrameAssembler

pytestmark = pytest.mark.unit

KEY = b"K"
WINDOW_S = 0.3


def is_key(payload: bytes) -> bool:
    return payload.startswith(KEY)


def stream(frames: list[tuple[bool, int]], first_seq: int) -> list[RtpPacket]:
    """Packets of frames given as (keyframe, packet count); payload names frame and packet."""
    packets, seq = [], first_seq
    for index, (key, count) in enumerate(frames):
        for part in range(count):
            payload = (KEY if key and part == 0 else b"P") + f"{index}/{part}".encode()
            packets.append(
                RtpPacket(
                    sequence_number=seq & 0xFFFF, timestamp=index * 3000, marker=int(part == count - 1), payload=payload
                )
            )
            seq += 1
    return packets


frames_strategy = st.lists(st.tuples(st.booleans(), st.integers(1, 6)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    frames=frames_strategy,
    first_seq=st.integers(0, 0xFFFF),
    lost=st.sets(st.integers(0, 200), max_size=30),
    swaps=st.lists(st.integers(0, 200), max_size=10),
    repaired=st.booleans(),
)
def test_only_whole_frames_in_order_and_a_keyframe_after_a_loss(
    frames: list[tuple[bool, int]], first_seq: int, lost: set[int], swaps: list[int], repaired: bool
) -> None:
    frames[0] = (True, frames[0][1])
    sent = stream(frames, first_seq)
    arrivals = [p for i, p in enumerate(sent) if i not in lost]
    for i in swaps:  # reordering
        if i + 1 < len(arrivals):
            arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    assembler = FrameAssembler(is_key, WINDOW_S, max_packets=512)
    now, out = 0.0, []
    for packet in arrivals:
        now += 0.001
        out += assembler.add(packet, now).frames
    if repaired:  # the retransmissions arrive within the window
        for i in sorted(lost):
            if i < len(sent):
                out += assembler.add(sent[i], now + 0.01).frames
    out += assembler.poll(now + 10 * WINDOW_S).frames

    by_timestamp: dict[int, list[bytes]] = {}
    for packet in sent:
        by_timestamp.setdefault(packet.timestamp, []).append(packet.payload)
    handed = [[p.payload for p in frame] for frame in out]
    for frame in out:
        assert [p.payload for p in frame] == by_timestamp[frame[0].timestamp]  # whole and in packet order
    indices = [frame[0].timestamp // 3000 for frame in out]
    assert indices == sorted(set(indices))  # in order, never twice
    if handed:
        assert is_key(handed[0][0])
    for before, after in itertools.pairwise(indices):
        if after != before + 1:  # a frame was skipped: the next handed on is a keyframe
            assert frames[after][0]
    if arrivals and arrivals[0] is sent[0] and not swaps and (repaired or not lost):  # nothing lost for good
        assert indices == list(range(len(frames)))


def test_a_hole_past_the_repair_window_drops_until_the_next_keyframe() -> None:
    sent = stream([(True, 2), (False, 2), (False, 2), (True, 2), (False, 1)], first_seq=65534)
    assembler = FrameAssembler(is_key, WINDOW_S, max_packets=512)
    handed = []
    for i, packet in enumerate(sent):
        if i != 3:  # the second packet of frame 1
            handed += assembler.add(packet, 0.0).frames
    assert [f[0].timestamp // 3000 for f in handed] == [0]
    result = assembler.poll(WINDOW_S + 0.01)
    assert result.want_keyframe is False
    assert [f[0].timestamp // 3000 for f in result.frames] == [3, 4]
    assert assembler.frames_dropped == 1


def test_without_a_keyframe_it_seeks_one_and_asks_for_it() -> None:
    assembler = FrameAssembler(is_key, WINDOW_S, max_packets=512)
    result = assembler.add(stream([(False, 1)], 10)[0], 0.0)
    assert result.want_keyframe
    assert not result.frames
    assert assembler.state is AssemblerState.SEEKING
