"""Whole video frames out of a forwarded stream's RTP packets, without decoding.

A frame is handed on (its packets as they arrived: payloads, marker and timestamp untouched) as soon
as every packet from the end of the previous frame up to its marker packet is there, so the other
leg only ever receives complete frames in order. A hole waits up to the repair window for its
retransmission; after that the frame and everything up to the next keyframe are dropped, and the
caller asks the sender for a keyframe. Pure logic: times come in as arguments.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket

from tandem.media.keyframes import KeyframeTest

_HALF = 1 << 15


def seq_after(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (16-bit wrap-around)."""
    return a != b and (a - b) & 0xFFFF < _HALF


def seq_next(seq: int, n: int = 1) -> int:
    return (seq + n) & 0xFFFF


class AssemblerState(enum.Enum):
    SEEKING = "seeking"
    """Waiting for a keyframe: at the start and after a frame that could not be repaired."""
    ASSEMBLING = "assembling"


@dataclass
class AssemblerOutput:
    frames: list[list[RtpPacket]] = field(default_factory=list)
    """Complete frames, oldest first, each its packets in sequence order."""
    new_gap: bool = False
    """Packets went missing with this packet: time to ask for retransmissions."""
    want_keyframe: bool = False
    """No keyframe to start from (the caller rate-limits the requests)."""


class FrameAssembler:
    """One forwarded video stream's frames.

    ``repair_window_s`` bounds how long a missing packet is waited for, ``max_packets`` how many
    packets are held (a stream that runs further ahead than that starts over from a keyframe).
    """

    def __init__(self, is_keyframe_start: KeyframeTest, repair_window_s: float, max_packets: int) -> None:
        self._is_keyframe_start = is_keyframe_start
        self._window_s = repair_window_s
        self._max_packets = max_packets
        self.state = AssemblerState.SEEKING
        self._next = 0
        """In ASSEMBLING: the sequence number that starts the next frame."""
        self._highest = 0
        self._packets: dict[int, RtpPacket] = {}
        self.missing: dict[int, float] = {}
        """Sequence numbers not yet received -> when they are given up (s)."""
        self.frames_dropped = 0
        self.packets_dropped = 0

    def add(self, packet: RtpPacket, now: float) -> AssemblerOutput:
        """Take one packet (original sequence numbers, retransmissions already unwrapped)."""
        out = AssemblerOutput()
        seq = packet.sequence_number
        if self.state is AssemblerState.SEEKING:
            if not self._is_keyframe_start(packet.payload):
                self.packets_dropped += 1
                out.want_keyframe = True
                return out
            self._start_at(seq)
        elif (not seq_after(seq, self._next) and seq != self._next) or seq in self._packets:
            return out  # a duplicate, or a late retransmission of something already handed on or dropped
        elif (seq - self._next) & 0xFFFF >= self._max_packets:
            self._seek(out)  # too far ahead to wait for what is missing
            if not self._is_keyframe_start(packet.payload):
                return out
            self._start_at(seq)
        if seq_after(seq, self._highest):
            gap = seq_next(self._highest)
            while gap != seq:
                self.missing[gap] = now + self._window_s
                out.new_gap = True
                gap = seq_next(gap)
            self._highest = seq
        filled = self.missing.pop(seq, None) is not None
        self._packets[seq] = packet
        # A frame can only complete with its marker packet or a repaired hole, and a hole only be
        # given up after its deadline: otherwise there is nothing to walk.
        if packet.marker or filled or (self.missing and now >= min(self.missing.values())):
            self._drain(now, out)
        return out

    def poll(self, now: float) -> AssemblerOutput:
        """Give up on holes whose repair window has passed although no packet arrived since."""
        out = AssemblerOutput()
        if self.state is AssemblerState.ASSEMBLING:
            self._drain(now, out)
        else:
            out.want_keyframe = True
        return out

    def _start_at(self, seq: int) -> None:
        self.state = AssemblerState.ASSEMBLING
        self._next = self._highest = seq
        self._packets.clear()
        self.missing.clear()

    def _drain(self, now: float, out: AssemblerOutput) -> None:
        while self.state is AssemblerState.ASSEMBLING and self._packets:
            frame: list[RtpPacket] = []
            seq = self._next
            while (packet := self._packets.get(seq)) is not None:
                frame.append(packet)
                if packet.marker:
                    break
                seq = seq_next(seq)
            if frame and frame[-1].marker:
                for packet in frame:
                    del self._packets[packet.sequence_number]
                self._next = seq_next(seq)
                out.frames.append(frame)
                continue
            if packet is None and seq in self.missing and self.missing[seq] <= now:
                self._give_up(out, after=seq)
                continue
            return

    def _give_up(self, out: AssemblerOutput, after: int) -> None:
        """Drop what cannot be completed; resume at the first buffered keyframe after ``after``
        (the missing packet), or seek one."""
        self.frames_dropped += 1
        ahead = sorted((s for s in self._packets if seq_after(s, after)), key=lambda s: (s - after) & 0xFFFF)
        keyframe = next((s for s in ahead if self._is_keyframe_start(self._packets[s].payload)), None)
        if keyframe is None:
            self._seek(out)
            return
        kept = {s: self._packets[s] for s in ahead[ahead.index(keyframe) :]}
        self.packets_dropped += len(self._packets) - len(kept)
        self._packets = kept
        self.missing = {s: t for s, t in self.missing.items() if seq_after(s, keyframe)}
        self._next = keyframe

    def _seek(self, out: AssemblerOutput) -> None:
        self.packets_dropped += len(self._packets)
        self._packets.clear()
        self.missing.clear()
        self.state = AssemblerState.SEEKING
        out.want_keyframe = True
