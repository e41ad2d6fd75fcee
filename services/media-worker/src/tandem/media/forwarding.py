"""Packet-level forwarding between a call's two legs, without decoding.

aiortc keeps SDP, ICE, DTLS and SRTP. A forwarded stream's decrypted packets are taken from the
receiving leg's transport before aiortc's receivers see them (no jitter buffer, no decoder); each
packet is rewritten into the other leg's sender (SSRC, payload type, sequence number, timestamp,
header extension ids) and protected for that leg. Feedback is translated between the legs: a
keyframe request (PLI or FIR) from the receiving party becomes a PLI to the sending party (rate
limited), the receiving party's bandwidth estimate (REMB) goes upstream as ``min(downstream,
the worker's own estimate of the upstream link)``, NACKs are answered from the worker's history,
the worker asks the sender for its own missing packets and reports reception (RR) upstream, and
the sender's clock (SR) is carried downstream for lip sync.

Video goes through a :class:`FrameAssembler`: the other leg only receives whole frames, in order,
and after a frame that could not be repaired nothing until the next keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.codecs import is_rtx
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
    wrap_rtx,
)
from aiortc.utils import random16, random32
from prometheus_client import Counter

from tandem.common.aio import TaskSet
from tandem.media.assembler import FrameAssembler, seq_next
from tandem.media.keyframes import KEYFRAME_TESTS
from tandem.media.seams import TransportHooks

logger = logging.getLogger(__name__)

PACKETS_FORWARDED = Counter("tandem_media_packets_forwarded_total", "RTP packets forwarded encoded", ["kind"])
KEYFRAME_REQUESTS = Counter(
    "tandem_media_keyframe_requests_total", "PLIs the worker sent to a sending party", ["reason"]
)
VIDEO_FRAMES_DROPPED = Counter(
    "tandem_media_video_frames_dropped_total", "Forwarded video frames given up (unrepaired loss)"
)
AUDIO_FORWARDED = PACKETS_FORWARDED.labels("audio")
VIDEO_FORWARDED = PACKETS_FORWARDED.labels("video")
RETRANSMISSIONS = Counter("tandem_media_retransmissions_total", "Packets resent to a receiving party on NACK")

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
HISTORY = 512
"""Sent packets kept per forwarded stream for retransmission (about 4 s of 640x480 video)."""
NTP_EPOCH_OFFSET_S = 2208988800


@dataclass(frozen=True, slots=True)
class ForwardingLimits:
    """Bounds of the forwarding path (seconds, packets)."""

    repair_window_s: float = 0.3
    keyframe_request_interval_s: float = 0.5
    max_frame_packets: int = 512
    nack_interval_s: float = 0.05


def codec_key(codec: RTCRtpCodecParameters) -> tuple[str, str]:
    """What two legs must share to forward a stream unchanged: the MIME type, and for H.264 the
    packetization mode and profile (the first two bytes of ``profile-level-id``)."""
    mime = codec.mimeType.lower()
    if mime != "video/h264":
        return mime, ""
    profile = str(codec.parameters.get("profile-level-id", ""))[:4].lower()
    return mime, f"{codec.parameters.get('packetization-mode', 0)}/{profile}"


@dataclass(frozen=True)
class Negotiated:
    """One leg's agreement for one kind, from the worker's answer."""

    kind: str
    mid: str
    codecs: list[RTCRtpCodecParameters]
    """Media codecs in the answer's order: the party sends the first."""
    rtx: dict[int, int]
    """Media payload type -> its RTX payload type."""
    extension_ids: dict[str, int]
    """Header extension URI -> its id on this leg."""

    @property
    def send_codec(self) -> RTCRtpCodecParameters:
        return self.codecs[0]

    def payload_type_for(self, codec: RTCRtpCodecParameters) -> int | None:
        key = codec_key(codec)
        return next((c.payloadType for c in self.codecs if codec_key(c) == key), None)


class ReceivedPacket(RtpPacket):
    """An RTP packet parsed from a datagram, which it keeps: forwarding unchanged payloads rewrites
    the datagram's header in place instead of serialising the packet again."""

    raw: bytes = b""

    @classmethod
    def from_datagram(cls, data: bytes, extensions: HeaderExtensionsMap) -> ReceivedPacket:
        packet = cls.parse(data, extensions)
        assert isinstance(packet, ReceivedPacket)
        packet.raw = data
        return packet


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp."""
    now = time.time() + NTP_EPOCH_OFFSET_S
    return (int(now) << 32) | int((now % 1) * (1 << 32))


class Outbound:
    """What the worker sends one party for one kind, in the SSRC its aiortc sender announced."""

    def __init__(
        self, hooks: TransportHooks, extensions: HeaderExtensionsMap, media: Negotiated, ssrc: int, rtx_ssrc: int
    ) -> None:
        self.hooks = hooks
        self.extensions = extensions
        self.media = media
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.sequence = random16() >> 1  # the lower half, as aiortc: far from a wrap that upsets SRTP
        self._rtx_sequence = random16() >> 1
        self._history: dict[int, bytes] = {}
        """What was sent, by sequence number, as the plain datagram: bytes are no work for the
        garbage collector, where packet objects in every stream's history were most of its work."""
        self.packets = 0
        self.octets = 0
        self.rewritten = 0
        """Packets sent by rewriting the received datagram in place."""
        self.clock_rate = media.send_codec.clockRate
        self.last_sequence: int | None = None
        self._last_timestamp: int | None = None
        self._last_sent_s = 0.0
        self.source_clock: tuple[int, int] | None = None
        """The sending party's last SR (NTP, RTP timestamp), mapped into this stream's timestamps."""
        self._mid = media.mid.encode()
        self._mid_id = media.extension_ids.get(MID_URI)
        self._abs_send_time_id = media.extension_ids.get(ABS_SEND_TIME_URI)
        self.feedback: Direction | None = None
        """The forwarding direction that feeds this stream (gets its PLIs and REMBs)."""
        self.rtt_s: float | None = None
        """The round trip to the party, from its reports on this stream's SRs (RFC 3550 A.8)."""
        self._sr_ntp_middle = 0
        self._sr_sent_s = 0.0

    def send(
        self, packet: RtpPacket, payload_type: int, sequence_number: int, timestamp: int, same_extensions: bool
    ) -> None:
        """Send ``packet`` rewritten into this stream (the packet object is reused). With
        ``same_extensions`` (both legs agreed the same header extension ids) an unchanged received
        packet's datagram is rewritten in place."""
        abs_send_time = (ntp_now() >> 14) & 0x00FFFFFF
        datagram = None
        if same_extensions and isinstance(packet, ReceivedPacket) and packet.raw.endswith(packet.payload):
            datagram = self._rewrite(packet.raw, payload_type, sequence_number, timestamp, abs_send_time)
            self.rewritten += datagram is not None
        packet.ssrc = self.ssrc
        packet.payload_type = payload_type
        packet.sequence_number = sequence_number
        packet.timestamp = timestamp
        packet.csrc = []
        extensions = packet.extensions
        extensions.mid = self.media.mid
        extensions.abs_send_time = abs_send_time
        extensions.rtp_stream_id = extensions.repaired_rtp_stream_id = None
        extensions.transport_sequence_number = None
        data = datagram if datagram is not None else packet.serialize(self.extensions)
        self._history[sequence_number % HISTORY] = data
        self.packets += 1
        self.octets += len(packet.payload)
        self.last_sequence = sequence_number
        self._last_timestamp = timestamp
        self._last_sent_s = time.time()
        self.hooks.send_now(data)

    def continuing(self, sequence_number: int, timestamp: int) -> tuple[int, int]:
        """Offsets (sequence number, timestamp) that carry a new source on where this stream left
        off (the party's receiver and SRTP see one stream): a fresh stream starts anywhere."""
        if self.last_sequence is None or self._last_timestamp is None:
            return random16(), random32()
        elapsed = max(0.0, time.time() - self._last_sent_s)
        next_timestamp = int(self._last_timestamp + max(1.0, elapsed * self.clock_rate))
        return (self.last_sequence + 1 - sequence_number) & 0xFFFF, (next_timestamp - timestamp) & 0xFFFFFFFF

    def _rewrite(
        self, raw: bytes, payload_type: int, sequence_number: int, timestamp: int, abs_send_time: int
    ) -> bytes | None:
        """The datagram with this stream's header fields, mid and send time; None when its layout
        needs a full serialisation (CSRCs, two-byte extensions, a mid of another length, an element
        missing)."""
        if raw[0] & 0x0F:
            return None
        buf = bytearray(raw)
        buf[1] = (buf[1] & 0x80) | payload_type
        struct.pack_into("!HII", buf, 2, sequence_number, timestamp, self.ssrc)
        if not buf[0] & 0x10:
            return None if self._mid_id or self._abs_send_time_id else bytes(buf)
        profile, words = struct.unpack_from("!HH", buf, 12)
        if profile != 0xBEDE:
            return None
        pos, end = 16, 16 + 4 * words
        mid_found = send_time_found = False
        while pos < end:
            head = buf[pos]
            pos += 1
            if head == 0:
                continue
            element, length = head >> 4, (head & 0x0F) + 1
            if element == 15:
                break
            if element == self._mid_id:
                if length != len(self._mid):
                    return None
                buf[pos : pos + length] = self._mid
                mid_found = True
            elif element == self._abs_send_time_id and length == 3:
                buf[pos : pos + 3] = abs_send_time.to_bytes(3, "big")
                send_time_found = True
            pos += length
        # Elements the full serialisation would add (or drop) need it.
        if mid_found != (self._mid_id is not None) or send_time_found != (self._abs_send_time_id is not None):
            return None
        return bytes(buf)

    def retransmit(self, sequence_number: int) -> None:
        """Resend one packet a receiving party reported lost (on the RTX stream when negotiated)."""
        data = self._history.get(sequence_number % HISTORY)
        if data is None or not self.hooks.connected:
            return
        packet = RtpPacket.parse(data, self.extensions)
        if packet.sequence_number != sequence_number:
            return
        rtx_type = self.media.rtx.get(packet.payload_type)
        if rtx_type is not None:
            packet = wrap_rtx(packet, payload_type=rtx_type, sequence_number=self._rtx_sequence, ssrc=self.rtx_ssrc)
            packet.extensions.mid = self.media.mid
            self._rtx_sequence = seq_next(self._rtx_sequence)
        RETRANSMISSIONS.inc()
        self.hooks.send_now(packet.serialize(self.extensions))

    def reception_report(self, block: RtcpReceiverInfo) -> None:
        """The party's report on this stream: the round trip, when it answers this stream's last SR."""
        if block.lsr and block.lsr == self._sr_ntp_middle:
            rtt = time.time() - self._sr_sent_s - block.dlsr / 65536
            if rtt >= 0:
                self.rtt_s = rtt

    def sender_report(self, report: RtcpSrPacket) -> None:
        """Fill the SR aiortc's idle sender is about to send with what was really sent (an idle sender
        has no NTP time of its own); the time it is sent is kept to measure the round trip."""
        now = ntp_now()
        report.sender_info.ntp_timestamp = now
        self._sr_ntp_middle, self._sr_sent_s = (now >> 16) & 0xFFFFFFFF, time.time()
        report.sender_info.packet_count = self.packets & 0xFFFFFFFF
        report.sender_info.octet_count = self.octets & 0xFFFFFFFF
        if self.source_clock is not None:
            ntp, rtp = self.source_clock
            elapsed = (now - ntp) / (1 << 32)
            report.sender_info.rtp_timestamp = int(rtp + elapsed * self.clock_rate) & 0xFFFFFFFF
        elif self._last_timestamp is not None:
            elapsed = time.time() - self._last_sent_s
            report.sender_info.rtp_timestamp = int(self._last_timestamp + elapsed * self.clock_rate) & 0xFFFFFFFF


class Inbound:
    """What one party sends for one kind, as the worker receives it."""

    def __init__(self, hooks: TransportHooks, media: Negotiated, rtcp_ssrc: int) -> None:
        self.hooks = hooks
        self.media = media
        self.rtcp_ssrc = rtcp_ssrc
        self.codecs = {c.payloadType: c for c in media.codecs}
        self.rtx_of = {rtx: apt for apt, rtx in media.rtx.items()}
        self.ssrc: int | None = None
        self.statistics: StreamStatistics | None = None
        self._lsr = 0
        self._lsr_time = 0.0

    def media_packet(self, packet: RtpPacket) -> RtpPacket | None:
        """The packet with retransmissions unwrapped; None for an unknown payload type."""
        apt = self.rtx_of.get(packet.payload_type)
        if apt is not None:
            if self.ssrc is None or len(packet.payload) < 2:
                return None
            return unwrap_rtx(packet, payload_type=apt, ssrc=self.ssrc)
        codec = self.codecs.get(packet.payload_type)
        if codec is None or is_rtx(codec):
            return None
        if packet.ssrc != self.ssrc:
            self.ssrc = packet.ssrc
            self.statistics = StreamStatistics(codec.clockRate)
        assert self.statistics is not None
        self.statistics.add(packet)
        return packet

    def sender_report(self, report: RtcpSrPacket) -> None:
        self._lsr = (report.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
        self._lsr_time = time.time()

    def receiver_report(self) -> RtcpReceiverInfo | None:
        stats = self.statistics
        if self.ssrc is None or stats is None or stats.max_seq is None:
            return None
        dlsr = int((time.time() - self._lsr_time) * 65536) if self._lsr else 0
        return RtcpReceiverInfo(
            ssrc=self.ssrc, fraction_lost=stats.fraction_lost, packets_lost=stats.packets_lost,
            highest_sequence=stats.max_seq, jitter=stats.jitter, lsr=self._lsr, dlsr=dlsr,
        )  # fmt: skip

    def send_rtcp(self, packet: AnyRtcpPacket) -> None:
        self.hooks.send_now(bytes(packet))


PayloadTransform = Callable[[RtpPacket], RtpPacket | None]
"""Turns a received packet's payload into the one to send (the audio DSP); None drops it."""


class Direction:
    """One party's stream of one kind, forwarded to the other party."""

    def __init__(
        self, source: Inbound, sink: Outbound, limits: ForwardingLimits, tasks: TaskSet, *, held: bool = False
    ) -> None:
        self.source = source
        self.sink = sink
        self.limits = limits
        self.kind = source.media.kind
        codec = source.media.send_codec
        payload_type = sink.media.payload_type_for(codec)
        if payload_type is None:
            raise ValueError(f"{codec.mimeType} is not negotiated on the receiving leg")
        self.payload_types = {
            c.payloadType: pt for c in source.media.codecs if (pt := sink.media.payload_type_for(c)) is not None
        }
        self._same_extensions = source.media.extension_ids == sink.media.extension_ids
        self._offsets: tuple[int, int] | None = None
        """(sequence number, timestamp) offsets into the sink's stream, set by the first packet."""
        self._last_keyframe_request = -limits.keyframe_request_interval_s
        self._last_nack = 0.0
        self._downstream_bitrate: int | None = None
        self._own_bitrate: int | None = None
        self._bitrate_cap: int | None = None
        self.transform: PayloadTransform | None = None
        self.assembler: FrameAssembler | None = None
        self._estimator: RemoteBitrateEstimator | None = None
        self._tasks = tasks
        self._poll: asyncio.Task[None] | None = None
        self.held = held
        """Pre-connect: the sending party's media is dropped here until :meth:`open`."""
        self.on_first_frame: Callable[[], None] | None = None
        """Called once, when the first video frame has been sent on."""
        if self.kind == "video":
            test = KEYFRAME_TESTS[codec.mimeType.lower()]
            self.assembler = FrameAssembler(test, limits.repair_window_s, limits.max_frame_packets)
            self._estimator = RemoteBitrateEstimator()
        sink.feedback = self

    def _timestamp(self, timestamp: int) -> int:
        assert self._offsets is not None  # set by the first packet
        return (timestamp + self._offsets[1]) & 0xFFFFFFFF

    def on_packet(self, packet: RtpPacket, arrival_ms: int) -> None:
        """A decrypted packet from the sending party (any payload type of this kind)."""
        media = self.source.media_packet(packet)
        if media is None:
            return
        if self._offsets is None:
            self._offsets = self.sink.continuing(media.sequence_number, media.timestamp)
        # Held, media is counted (the sender's reports stay true) and video's bitrate estimated, so
        # the sender ramps up before the accept (its first keyframe then goes out fast), not sent on.
        if self.assembler is None:
            if not self.held:
                self._send_audio(media)
            return
        self._estimate(packet, arrival_ms)
        if self.held:
            return
        now = time.monotonic()
        out = self.assembler.add(media, now)
        if out.new_gap or (self.assembler.missing and now - self._last_nack >= self.limits.nack_interval_s):
            self._nack(now)
        if out.new_gap and self._poll is None:
            self._poll = self._tasks.spawn(self._poll_assembler(), name="repair-window")
        self._send_frames(out.frames, out.want_keyframe)

    def _send_audio(self, media: RtpPacket) -> None:
        if self.transform is not None:
            transformed = self.transform(media)
            if transformed is None:
                return
            media = transformed
        payload_type = self.payload_types.get(media.payload_type)
        if payload_type is None:
            return
        assert self._offsets is not None
        sequence = (media.sequence_number + self._offsets[0]) & 0xFFFF
        AUDIO_FORWARDED.inc()
        self.sink.send(media, payload_type, sequence, self._timestamp(media.timestamp), self._same_extensions)

    def _send_frames(self, frames: list[list[RtpPacket]], want_keyframe: bool) -> None:
        for frame in frames:
            for packet in frame:
                payload_type = self.payload_types.get(packet.payload_type)
                if payload_type is None:
                    continue
                sequence, self.sink.sequence = self.sink.sequence, seq_next(self.sink.sequence)
                self.sink.send(packet, payload_type, sequence, self._timestamp(packet.timestamp), self._same_extensions)
            VIDEO_FORWARDED.inc(len(frame))
        if frames and self.on_first_frame is not None:
            first, self.on_first_frame = self.on_first_frame, None
            first()
        if want_keyframe:
            assert self.assembler is not None
            self.request_keyframe("unrepaired" if self.assembler.frames_dropped else "start")

    async def _poll_assembler(self) -> None:
        """Give up on holes when their repair window ends, even if no packet comes to notice."""
        assert self.assembler is not None
        try:
            while self.assembler.missing:
                await asyncio.sleep(self.limits.repair_window_s)
                out = self.assembler.poll(time.monotonic())
                self._send_frames(out.frames, out.want_keyframe)
        finally:
            self._poll = None

    def _nack(self, now: float) -> None:
        assert self.assembler is not None
        if self.source.ssrc is None:
            return
        self._last_nack = now
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self.source.rtcp_ssrc, media_ssrc=self.source.ssrc)
        nack.lost = sorted(self.assembler.missing)[:64]
        self.source.send_rtcp(nack)

    def open(self) -> None:
        """Forward from now on (the host accepted); video starts at a keyframe, asked for at once
        (the assembler has seen nothing, so it waits for one)."""
        if not self.held:
            return
        self.held = False
        if self.assembler is not None:
            self._last_keyframe_request = -self.limits.keyframe_request_interval_s
            self.request_keyframe("open")

    def request_keyframe(self, reason: str) -> None:
        """A PLI to the sending party, at most once per ``keyframe_request_interval_s``."""
        now = time.monotonic()
        if self.source.ssrc is None or now - self._last_keyframe_request < self.limits.keyframe_request_interval_s:
            return
        self._last_keyframe_request = now
        KEYFRAME_REQUESTS.labels(reason).inc()
        self.source.send_rtcp(
            RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.source.rtcp_ssrc, media_ssrc=self.source.ssrc)
        )

    def _estimate(self, packet: RtpPacket, arrival_ms: int) -> None:
        abs_send_time = packet.extensions.abs_send_time
        if self._estimator is None or abs_send_time is None:
            return
        remb = self._estimator.add(
            abs_send_time=abs_send_time, arrival_time_ms=arrival_ms,
            payload_size=len(packet.payload) + packet.padding_size, ssrc=packet.ssrc,
        )  # fmt: skip
        if remb is not None:
            self._own_bitrate = remb[0]
            self._send_remb()

    def on_downstream_remb(self, bitrate: int) -> None:
        """The receiving party's estimate of its link, in bit/s."""
        self._downstream_bitrate = bitrate
        self._send_remb()

    def cap_bitrate(self, bitrate: int | None) -> None:
        """Ask the sending party to send at most ``bitrate`` bit/s (None: as its links allow) — the
        worker shedding video when it is overloaded."""
        self._bitrate_cap = bitrate
        self._send_remb()

    def _send_remb(self) -> None:
        bitrates = (self._downstream_bitrate, self._own_bitrate, self._bitrate_cap)
        estimates = [b for b in bitrates if b is not None]
        if not estimates or self.source.ssrc is None:
            return
        fci = pack_remb_fci(min(estimates), [self.source.ssrc])
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self.source.rtcp_ssrc, media_ssrc=0, fci=fci)
        self.source.send_rtcp(remb)

    def on_sender_report(self, report: RtcpSrPacket) -> None:
        self.source.sender_report(report)
        if self._offsets is not None:  # mapped into the sink's stream once it has one
            self.sink.source_clock = (
                report.sender_info.ntp_timestamp,
                self._timestamp(report.sender_info.rtp_timestamp),
            )


class LegRtp:
    """One leg's decrypted traffic: forwarded streams in, forwarded streams out, the rest to aiortc."""

    def __init__(self) -> None:
        self.hooks: list[TransportHooks] = []
        self.extensions = HeaderExtensionsMap()
        self.incoming: dict[str, Direction] = {}
        """Kind -> the direction that forwards what this party sends."""
        self.delivered: set[str] = set()
        """Kinds aiortc decodes (the transcoding relay)."""
        self.outgoing: dict[int, Outbound] = {}
        """SSRC -> what the worker forwards to this party."""
        self._kinds: dict[int, str] = {}
        self.first_media = asyncio.Event()
        """Set by the first media packet the party sends."""

    def add_receiver(self, receiver: object, kind: str) -> None:
        self._kinds[id(receiver)] = kind

    def on_rtp(self, hooks: TransportHooks, data: bytes, arrival_ms: int) -> bool:
        """A decrypted RTP packet from this party; False when it is for aiortc to decode."""
        try:
            packet = ReceivedPacket.from_datagram(data, self.extensions)
        except ValueError:
            return True
        kind = self._kinds.get(id(hooks.receiver_of(packet)))
        if kind is None:
            return True
        self.first_media.set()
        direction = self.incoming.get(kind)
        if direction is not None:
            direction.on_packet(packet, arrival_ms)
            return True
        # A kind the other leg receives decoded, or nowhere to send it yet (the other party has not answered).
        return kind not in self.delivered

    async def on_rtcp(self, hooks: TransportHooks, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            self._feedback(packet)
        await hooks.deliver_rtcp(data)  # aiortc's idle senders ignore what was meant for forwarding

    def _feedback(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
            for block in packet.reports:
                if (reported := self.outgoing.get(block.ssrc)) is not None:
                    reported.reception_report(block)
        if isinstance(packet, RtcpSrPacket):
            for direction in self.incoming.values():
                if direction.source.ssrc == packet.ssrc:
                    direction.on_sender_report(packet)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            outbound = self.outgoing.get(packet.media_ssrc)
            if outbound is not None:
                for seq in packet.lost:
                    outbound.retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            outbound = self.outgoing.get(packet.media_ssrc)
            if outbound is not None and outbound.feedback is not None:
                outbound.feedback.request_keyframe("receiver")
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            for ssrc in ssrcs:
                outbound = self.outgoing.get(ssrc)
                if outbound is not None and outbound.feedback is not None:
                    outbound.feedback.on_downstream_remb(bitrate)

    def outgoing_rtcp(self, data: bytes) -> bytes:
        """Rewrite the SRs of aiortc's idle senders with the forwarded streams' real figures."""
        if data[1] != 200 or not self.outgoing:
            return data
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return data
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and (outbound := self.outgoing.get(packet.ssrc)) is not None:
                outbound.sender_report(packet)
        return b"".join(bytes(packet) for packet in packets)

    def report_reception(self) -> None:
        """One RR per forwarded incoming stream (loss, jitter, and the round trip the sender measures)."""
        for direction in self.incoming.values():
            report = direction.source.receiver_report()
            if report is not None:
                direction.source.send_rtcp(RtcpRrPacket(ssrc=direction.source.rtcp_ssrc, reports=[report]))

    async def run_reports(self) -> None:
        """Send receiver reports every 0.5-1.5 s (RFC 3550's randomised interval) until cancelled."""
        while True:
            await asyncio.sleep(0.5 + random16() / 65536)
            self.report_reception()
