"""A malformed ICE candidate is the client's mistake, answered as such with a bounded message."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration

from tandem.common.errors import TandemError
from tandem.media.call import CallOptions, MediaCall
from tandem.media.quality import CallQuality, QualityConfig, QualityReporter
from tandem.v1 import client_pb2, common_pb2, media_pb2

pytestmark = pytest.mark.unit

OFFER = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendrecv
a=rtcp-mux
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
a=setup:actpass
a=rtpmap:111 opus/48000/2
"""


def unreported(call_id: str) -> CallQuality:
    """A call's quality kept but never published (no bus)."""
    return QualityReporter("test-worker", QualityConfig()).for_call(call_id)


@pytest.mark.parametrize(
    "candidate",
    ["garbage", "candidate:", "candidate:1 1 udp", "candidate:1 1 udp 1 1.2.3.4 notaport typ host", "x" * 5000],
)
async def test_a_malformed_candidate_is_invalid_argument(candidate: str) -> None:
    call = MediaCall("c1", RTCConfiguration(iceServers=[]), CallOptions(), lambda *_: None, unreported("c1"))
    try:
        await call.answer(media_pb2.LEG_SHOPPER, OFFER)
        with pytest.raises(TandemError) as error:
            await call.add_candidate(media_pb2.LEG_SHOPPER, client_pb2.IceCandidate(candidate=candidate, sdp_mid="0"))
        assert error.value.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT
        assert len(str(error.value)) < 200
    finally:
        await call.close()


async def test_a_wellformed_candidate_is_taken() -> None:
    call = MediaCall("c1", RTCConfiguration(iceServers=[]), CallOptions(), lambda *_: None, unreported("c1"))
    try:
        await call.answer(media_pb2.LEG_SHOPPER, OFFER)
        good = client_pb2.IceCandidate(candidate="candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", sdp_mid="0")
        await call.add_candidate(media_pb2.LEG_SHOPPER, good)
    finally:
        await call.close()


async def test_an_mdns_candidate_is_answered_without_waiting_for_its_name_to_resolve() -> None:
    """Browsers name their host candidates `<uuid>.local`; resolving one takes up to a second, and
    candidates are answered one at a time, so the reply must not wait for it."""
    call = MediaCall("c1", RTCConfiguration(iceServers=[]), CallOptions(), lambda *_: None, unreported("c1"))
    try:
        await call.answer(media_pb2.LEG_SHOPPER, OFFER)
        for name in ("0f4b7d2e-1111-4a4a-8b8b-000000000001.local", "0f4b7d2e-1111-4a4a-8b8b-000000000002.local"):
            mdns = client_pb2.IceCandidate(candidate=f"candidate:1 1 udp 2130706431 {name} 50000 typ host", sdp_mid="0")
            step = call.add_candidate(media_pb2.LEG_SHOPPER, mdns)
            try:
                step.send(None)
            except StopIteration:
                continue  # finished at its first step: it never waited on the network
            step.close()
            pytest.fail(f"the reply to {name} waited for the name to resolve")
    finally:
        await call.close()
