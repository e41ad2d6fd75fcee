"""The aiortc seams the call-quality taps use (the pinned series is checked in
test_aiortc_contract.py). When an aiortc upgrade moves one, this fails here, loudly, instead of
the quality figures going quietly to zero."""

from __future__ import annotations

import inspect

import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_capabilities
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import HeaderExtensions

from tandem.media.rtpstats import ReceiverTap, RtpCounters, SenderTap, negotiated_codec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("cls", "method", "parameters", "caller", "call"),
    [
        (RTCRtpReceiver, "_handle_rtp_packet", ["self", "packet", "arrival_time_ms"], RTCDtlsTransport,
         "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)"),
        (RTCRtpReceiver, "_send_rtcp_nack", ["self", "media_ssrc", "lost"], RTCRtpReceiver,
         "await self._send_rtcp_nack("),
        (RTCRtpReceiver, "_send_rtcp_pli", ["self", "media_ssrc"], RTCRtpReceiver,
         "await self._send_rtcp_pli(packet.ssrc)"),
        (RTCRtpSender, "_handle_rtcp_packet", ["self", "packet"], RTCDtlsTransport,
         "await recipient._handle_rtcp_packet(packet)"),
    ],
)  # fmt: skip
def test_the_wrapped_methods_keep_their_signatures_and_callers(
    cls: type, method: str, parameters: list[str], caller: type, call: str
) -> None:
    assert list(inspect.signature(getattr(cls, method)).parameters) == parameters
    # The taps replace them per instance: their callers must look them up on the instance.
    assert call in inspect.getsource(caller)


def test_audio_carries_the_audio_level_header_extension() -> None:
    uris = [extension.uri for extension in get_capabilities("audio").headerExtensions]
    assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" in uris
    assert HeaderExtensions().audio_level is None  # parsed into (voice, -dBov) when present


def test_stream_statistics_keep_the_fields_the_receiver_tap_reads() -> None:
    stats = StreamStatistics(clockrate=90_000)
    assert (stats.packets_received, stats._clockrate, stats.jitter) == (0, 90_000, 0)
    assert isinstance(StreamStatistics.packets_lost, property)


async def test_taps_read_fresh_receivers_and_senders() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio")
        assert negotiated_codec(transceiver) == ("", 48_000)
        receiver_tap = ReceiverTap(transceiver.receiver, 48_000, -50.0)
        sender_tap = SenderTap(transceiver.sender, 48_000)
        assert receiver_tap.counters() == RtpCounters()
        assert await sender_tap.counters() == RtpCounters()
    finally:
        await pc.close()
