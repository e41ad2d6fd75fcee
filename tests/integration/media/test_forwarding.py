"""Video forwarded encoded between two real aiortc parties on loopback: the receiving party gets the
sender's own VP8 frames, the worker decodes none, keyframe requests reach the sender, and loss on
the worker's input is repaired or recovered without a decode error at the receiver."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpSrPacket, unpack_remb_fci
from prometheus_client import REGISTRY

from tandem.media.call import CallOptions
from tandem.media.errors import LegAlreadyNegotiatedError
from tandem.media.seams import sender_ssrcs
from tandem.v1 import media_pb2

from .conftest import CallFactory, Party, until, vp8_frames

pytestmark = pytest.mark.integration

VP8 = "video/vp8"


def decoded(kind: str) -> float:
    return REGISTRY.get_sample_value("tandem_media_frames_decoded_total", {"kind": kind}) or 0.0


def plis_for(party: Party) -> int:
    ssrc = party.video_sender_ssrc()
    return sum(
        1
        for p in party.tap.rtcp_received
        if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI and p.media_ssrc == ssrc
    )


def rembs_for(party: Party) -> list[int]:
    ssrc = party.video_sender_ssrc()
    bitrates = []
    for packet in party.tap.rtcp_received:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
            if ssrc in ssrcs:
                bitrates.append(bitrate)
    return bitrates


def assert_frames_are_the_senders(sender: Party, receiver: Party, at_least: int) -> None:
    sent = vp8_frames(sender.tap.sent, sender.payload_types(VP8))
    received = vp8_frames(receiver.tap.received, receiver.payload_types(VP8))
    assert len(received) >= at_least
    # The worker shifts every timestamp by one offset: find it from one frame, then check them all.
    first = min(received, key=lambda ts: (ts - min(received)) & 0xFFFFFFFF)
    origin = next(ts for ts, frame in sent.items() if frame == received[first])
    offset = (first - origin) & 0xFFFFFFFF
    for timestamp, frame in received.items():
        assert sent.get((timestamp - offset) & 0xFFFFFFFF) == frame


async def test_forwarded_frames_are_the_senders_bytes_and_nothing_is_decoded(media_call: CallFactory) -> None:
    before = decoded("video")
    call = await media_call()
    await until(lambda: call.host.frames["video"] >= 60 and call.shopper.frames["video"] >= 60, timeout_s=20)
    assert_frames_are_the_senders(call.shopper, call.host, at_least=40)
    assert_frames_are_the_senders(call.host, call.shopper, at_least=40)
    assert decoded("video") == before
    # Both parties agreed the same header extension ids: datagrams were rewritten in place.
    assert call.call.directions[(media_pb2.LEG_SHOPPER, "video")].sink.rewritten > 0
    assert {(leg, kind) for leg, kind, _ in call.events} >= {
        (media_pb2.LEG_SHOPPER, media_pb2.MediaEvent.KIND_FIRST_MEDIA),
        (media_pb2.LEG_HOST, media_pb2.MediaEvent.KIND_FIRST_MEDIA),
    }
    assert call.host.frames["audio"] > 0
    assert call.shopper.frames["audio"] > 0

    # Feedback both ways: the sender gets bandwidth estimates for its video (the receiver's, capped
    # by the worker's own), the receiver gets sender reports of what was really forwarded to it.
    await until(lambda: bool(rembs_for(call.shopper)), timeout_s=5)
    worker_ssrc = sender_ssrcs(call.call.legs[media_pb2.LEG_HOST].senders["video"])[0]
    reports = [p for p in call.host.tap.rtcp_received if isinstance(p, RtcpSrPacket) and p.ssrc == worker_ssrc]
    assert reports
    assert reports[-1].sender_info.packet_count > 0


def video_bytes_sent(party: Party) -> int:
    ssrc = party.video_sender_ssrc()
    return sum(len(p.payload) for p in party.tap.sent if p.ssrc == ssrc)


async def test_a_worker_shedding_load_asks_for_less_video_and_leaves_the_voice_alone(media_call: CallFactory) -> None:
    call = await media_call()
    await until(lambda: bool(rembs_for(call.shopper)) and call.host.frames["video"] >= 30, timeout_s=20)
    start = video_bytes_sent(call.shopper)
    await asyncio.sleep(2.0)
    unlimited = video_bytes_sent(call.shopper) - start

    call.call.shed_video(60_000)
    asked = len(rembs_for(call.shopper))
    await until(lambda: len(rembs_for(call.shopper)) > asked, timeout_s=5)
    start, heard = video_bytes_sent(call.shopper), call.host.frames["audio"]
    await asyncio.sleep(2.0)
    # Every estimate the sender was given since is within the cap (aiortc's VP8 encoder itself goes
    # no lower than 250 kbit/s, so what it sends falls less than asked).
    assert max(rembs_for(call.shopper)[asked:]) <= 60_000
    shed = video_bytes_sent(call.shopper) - start
    print(f"\nvideo sent in 2 s: {unlimited} bytes before, {shed} bytes asked for 60 kbit/s")
    # The voice goes on, and nobody is asked to send less of it.
    assert call.host.frames["audio"] > heard
    audio_ssrc = next(t.sender._ssrc for t in call.shopper.pc.getTransceivers() if t.kind == "audio")
    assert not [p for p in call.shopper.tap.rtcp_received if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP
                and audio_ssrc in unpack_remb_fci(p.fci)[1]]  # fmt: skip

    call.call.shed_video(None)
    lifted = len(rembs_for(call.shopper))
    await until(lambda: any(b > 60_000 for b in rembs_for(call.shopper)[lifted:]), timeout_s=10)


async def test_the_same_offer_again_gets_the_same_answer_and_another_is_refused(media_call: CallFactory) -> None:
    """A leg's offer asked again (its answer went astray with a signaling instance that lost the
    call) is answered as the first time; a different offer needs `restart`."""
    call = await media_call()
    offer = call.shopper.pc.localDescription.sdp
    first = call.call.legs[media_pb2.LEG_SHOPPER].pc
    assert first is not None
    assert await call.call.answer(media_pb2.LEG_SHOPPER, offer) == first.localDescription.sdp
    assert call.call.legs[media_pb2.LEG_SHOPPER].pc is first  # nothing renegotiated
    with pytest.raises(LegAlreadyNegotiatedError):
        await call.call.answer(media_pb2.LEG_SHOPPER, call.host.pc.localDescription.sdp)


async def test_a_receivers_keyframe_request_reaches_the_sender(media_call: CallFactory) -> None:
    call = await media_call()
    await until(lambda: call.host.frames["video"] >= 10, timeout_s=20)
    await asyncio.sleep(1.0)  # past the rate limit of the worker's own start-up request
    before = plis_for(call.shopper)
    worker_ssrc = sender_ssrcs(call.call.legs[media_pb2.LEG_HOST].senders["video"])[0]
    await call.host.send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=worker_ssrc))
    await until(lambda: plis_for(call.shopper) > before, timeout_s=5)


async def test_ten_percent_loss_into_the_worker_gives_no_decode_error(
    media_call: CallFactory, caplog: pytest.LogCaptureFixture
) -> None:
    shopper = Party()
    call = await media_call(shopper=shopper)
    shopper.tap.loss = 0.10
    with caplog.at_level(logging.WARNING, logger="aiortc.rtcrtpreceiver"):
        await until(lambda: call.host.frames["video"] >= 150, timeout_s=40)
    assert shopper.tap.dropped > 20
    assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]
    assert_frames_are_the_senders(shopper, call.host, at_least=100)
    direction = call.call.directions[(media_pb2.LEG_SHOPPER, "video")]
    assert direction.assembler is not None
    # Most holes were repaired by retransmission: far more frames arrived than were given up.
    assert direction.assembler.frames_dropped < call.host.frames["video"] / 5


async def test_legs_without_a_common_video_codec_fall_back_to_the_relay(media_call: CallFactory) -> None:
    before = decoded("video")
    call = await media_call(shopper=Party(("video/VP8", "video/H264")), host=Party(("video/H264",)))
    await until(lambda: call.host.frames["video"] >= 20 and call.shopper.frames["video"] >= 20, timeout_s=30)
    # The host sends H.264, which the shopper also accepts: forwarded. The shopper sends VP8: relayed.
    assert (media_pb2.LEG_HOST, "video") in call.call.directions
    assert (media_pb2.LEG_SHOPPER, "video") in call.call.transcoded
    assert [
        (leg, detail) for leg, kind, detail in call.events if kind == media_pb2.MediaEvent.KIND_VIDEO_TRANSCODED
    ] == [(media_pb2.LEG_SHOPPER, "video/VP8 not accepted by the other party")]
    assert decoded("video") > before


async def test_relay_mode_still_decodes_and_reencodes(media_call: CallFactory) -> None:
    before = decoded("video")
    call = await media_call(CallOptions(forward=False))
    await until(lambda: call.host.frames["video"] >= 10 and call.shopper.frames["video"] >= 10, timeout_s=30)
    assert decoded("video") > before
    assert not call.call.directions
