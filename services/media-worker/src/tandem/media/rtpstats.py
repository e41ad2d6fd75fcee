"""What aiortc knows about one leg's RTP streams, per receiver and per sender instance.

aiortc's statistics miss what call quality needs: a receiver's inbound report keeps one SSRC only
(its retransmission stream overwrites the media stream's, both share one id), and nothing counts
bytes received or the NACKs and PLIs exchanged. So each receiver and sender gets per-instance taps
(instance attributes wrapping aiortc's private methods; the classes stay untouched) and the
receiver's per-SSRC statistics are read where aiortc keeps them. aiortc is pinned to a minor
version; tests/unit/media/test_aiortc_contract.py fails loudly when an upgrade moves these seams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)
from aiortc.stats import RTCOutboundRtpStreamStats, RTCRemoteInboundRtpStreamStats

from tandem.media.forwarding import Inbound, Outbound
from tandem.media.keyframes import vp8_keyframe_size

# The clock rate of a stream whose codec is not known yet (RTP video clocks are all 90 kHz).
_CLOCK_RATES = {"audio": 48_000, "video": 90_000}


@dataclass(frozen=True, slots=True)
class RtpCounters:
    """Cumulative counts of one stream since it began: original packets and packets lost, payload
    bytes, NACK and PLI/FIR messages. ``jitter_s`` (RFC 3550) and ``rtt_s`` (None until measured)
    are the latest values, seconds. From the audio-level header extension (RFC 6464), received
    audio only: ``level_power``, the summed linear power of the ``level_packets`` that carried it,
    and ``talk_s``, the seconds of audio in packets the sender marked as voice (or, from a sender
    that never marks voice, at least as loud as the talk threshold)."""

    packets: int = 0
    lost: int = 0
    bytes: int = 0
    nacks: int = 0
    plis: int = 0
    jitter_s: float = 0.0
    rtt_s: float | None = None
    level_power: float = 0.0
    level_packets: int = 0
    talk_s: float = 0.0


def negotiated_codec(transceiver: RTCRtpTransceiver) -> tuple[str, int]:
    """The codec a transceiver negotiated: lower-case name ("opus", "vp8") and clock rate (Hz);
    ("", the kind's usual clock rate) before negotiation."""
    codecs = transceiver._codecs
    if not codecs:
        return "", _CLOCK_RATES.get(transceiver.kind, 90_000)
    return codecs[0].mimeType.split("/", 1)[-1].lower(), codecs[0].clockRate


class ReceiverTap:
    """Counts what one receiver gets from the party and what it asks the party for. Audio levels
    come from the packets' RFC 6464 header extension, so they need no decoding."""

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int, talk_threshold_dbfs: float) -> None:
        self._receiver = receiver
        self._bytes = 0
        self._nacks = 0
        self._plis = 0
        self._level = AudioLevels(clock_rate, talk_threshold_dbfs)
        handle_rtp = receiver._handle_rtp_packet
        send_nack = receiver._send_rtcp_nack
        send_pli = receiver._send_rtcp_pli

        async def on_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            self._bytes += len(packet.payload)
            if packet.extensions.audio_level is not None:
                self._level.add(packet.timestamp, *packet.extensions.audio_level)
            await handle_rtp(packet, arrival_time_ms)

        async def on_nack(media_ssrc: int, lost: list[int]) -> None:
            self._nacks += 1
            await send_nack(media_ssrc, lost)

        async def on_pli(media_ssrc: int) -> None:
            self._plis += 1
            await send_pli(media_ssrc)

        receiver._handle_rtp_packet = on_rtp  # type: ignore[method-assign]
        receiver._send_rtcp_nack = on_nack  # type: ignore[method-assign]
        receiver._send_rtcp_pli = on_pli  # type: ignore[method-assign]

    def counters(self) -> RtpCounters:
        """The media streams' figures (retransmission streams excluded from packets and loss)."""
        streams: dict[int, StreamStatistics] = getattr(self._receiver, "_RTCRtpReceiver__remote_streams")  # noqa: B009
        rtx: dict[int, int] = getattr(self._receiver, "_RTCRtpReceiver__rtx_ssrc")  # noqa: B009
        media = [stream for ssrc, stream in streams.items() if ssrc not in rtx]
        return RtpCounters(
            packets=sum(s.packets_received for s in media),
            lost=sum(max(0, s.packets_lost) for s in media),
            bytes=self._bytes,
            nacks=self._nacks,
            plis=self._plis,
            jitter_s=max((s.jitter / s._clockrate for s in media), default=0.0),
            level_power=self._level.power,
            level_packets=self._level.packets,
            talk_s=self._level.talk_s,
        )


class ForwardedReceiverTap:
    """Counts what one party sends for a kind that the worker forwards itself (its packets never
    reach aiortc's receiver): reception from the forwarding's own statistics, bytes and levels from
    each packet, the NACKs and PLIs the worker sends the party, and every frame's arrival (a video
    frame ends at its marker packet; an audio packet is a frame). Per instance, like `ReceiverTap`."""

    def __init__(
        self,
        inbound: Inbound,
        kind: str,
        clock_rate: int,
        talk_threshold_dbfs: float,
        on_frame: Callable[[int, int], None],
    ) -> None:
        self._inbound = inbound
        self._bytes = 0
        self._nacks = 0
        self._plis = 0
        self._level = AudioLevels(clock_rate, talk_threshold_dbfs)
        # Frame size from VP8 keyframes (pixels; 0 until one arrives, and for other codecs).
        self.width = self.height = 0
        media_packet = inbound.media_packet
        send_rtcp = inbound.send_rtcp

        def counted(packet: RtpPacket) -> RtpPacket | None:
            media = media_packet(packet)
            if media is not None:
                self._bytes += len(media.payload)
                if media.extensions.audio_level is not None:
                    self._level.add(media.timestamp, *media.extensions.audio_level)
                if kind == "video" and (size := vp8_keyframe_size(media.payload)) is not None:
                    self.width, self.height = size
                if kind == "audio" or media.marker:
                    on_frame(self.width, self.height)
            return media

        def sent(packet: AnyRtcpPacket) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self._nacks += 1
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self._plis += 1
            send_rtcp(packet)

        inbound.media_packet = counted  # type: ignore[method-assign]
        inbound.send_rtcp = sent  # type: ignore[method-assign]

    def counters(self) -> RtpCounters:
        stats = self._inbound.statistics
        return RtpCounters(
            packets=stats.packets_received if stats else 0,
            lost=max(0, stats.packets_lost) if stats else 0,
            bytes=self._bytes,
            nacks=self._nacks,
            plis=self._plis,
            jitter_s=stats.jitter / stats._clockrate if stats else 0.0,
            level_power=self._level.power,
            level_packets=self._level.packets,
            talk_s=self._level.talk_s,
        )


class AudioLevels:
    """Levels (-dBov, 0 loudest .. 127) and voice flags of received audio packets."""

    # A timestamp step longer than this is a gap, not one packet's audio (Opus packets hold <= 120 ms).
    _MAX_PACKET_S = 0.120

    def __init__(self, clock_rate: int, talk_threshold_dbfs: float) -> None:
        self._clock_rate = clock_rate
        self._threshold = -talk_threshold_dbfs
        self._last_timestamp: int | None = None
        self.power = 0.0
        self.packets = 0
        self.talk_s = 0.0
        self._sender_marks_voice = False

    def add(self, timestamp: int, voiced: bool, level: int) -> None:
        last, self._last_timestamp = self._last_timestamp, timestamp
        step = ((timestamp - last) % 2**32) / self._clock_rate if last is not None else 0.0
        duration = step if 0.0 < step <= self._MAX_PACKET_S else 0.0
        self.power += 10.0 ** (-level / 10.0)
        self.packets += 1
        # A sender with a VAD marks voice; from its first mark on, its marks decide.
        self._sender_marks_voice |= voiced
        if voiced if self._sender_marks_voice else level <= self._threshold:
            self.talk_s += duration


class SenderTap:
    """Counts what one sender sends to the party and what the party reports and asks for."""

    def __init__(self, sender: RTCRtpSender, clock_rate: int) -> None:
        self._sender = sender
        self._clock_rate = clock_rate
        # The stream the worker writes itself when it forwards this kind (aiortc's sender sends nothing).
        self.forwarded: Outbound | None = None
        self._nacks = 0
        self._plis = 0
        handle_rtcp = sender._handle_rtcp_packet

        async def on_rtcp(packet: AnyRtcpPacket) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self._nacks += 1
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self._plis += 1
            await handle_rtcp(packet)

        sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign]

    async def counters(self) -> RtpCounters:
        """Packets the party received (sent less lost) and bytes sent (aiortc's outbound stats);
        the party's loss, jitter and the RTT from its latest receiver report (remote-inbound stats)."""
        sent: Any = None
        remote: Any = None
        for stats in (await self._sender.getStats()).values():
            if isinstance(stats, RTCOutboundRtpStreamStats):
                sent = stats
            elif isinstance(stats, RTCRemoteInboundRtpStreamStats):
                remote = stats
        lost = max(0, remote.packetsLost) if remote else 0
        forwarded = self.forwarded
        packets_sent = forwarded.packets if forwarded else sent.packetsSent if sent else 0
        return RtpCounters(
            packets=max(0, packets_sent - lost),
            lost=lost,
            bytes=forwarded.octets if forwarded else sent.bytesSent if sent else 0,
            nacks=self._nacks,
            plis=self._plis,
            jitter_s=remote.jitter / self._clock_rate if remote else 0.0,
            rtt_s=forwarded.rtt_s if forwarded else remote.roundTripTime if remote else None,
        )
