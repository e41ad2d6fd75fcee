"""A worker behind a node's IP announces that address: its answer names no other host address,
and a real peer connects through it."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tandem.devstack.media import PatternTrack, ToneTrack
from tandem.media.announce import announce
from tandem.media.call import CallOptions, MediaCall
from tandem.v1 import media_pb2

from .conftest import unreported

pytestmark = pytest.mark.integration

ANNOUNCED = "127.0.0.1"  # loopback stands in for the node's address: the worker listens on it too


def host_addresses(sdp: str) -> set[str]:
    return {line.split(" ")[4] for line in sdp.splitlines() if line.startswith("a=candidate:") and " typ host" in line}


async def test_the_answer_announces_one_address_and_a_peer_connects_through_it() -> None:
    call = MediaCall("announced", RTCConfiguration(iceServers=[]), CallOptions(), lambda *_: None, unreported("c"))
    party = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        party.addTrack(ToneTrack(440))
        party.addTrack(PatternTrack(40))
        await party.setLocalDescription(await party.createOffer())
        own = await call.answer(media_pb2.LEG_SHOPPER, party.localDescription.sdp)
        assert host_addresses(own) - {ANNOUNCED}, "the machine has no address but loopback: nothing to replace"

        answer = announce(own, ANNOUNCED)
        assert host_addresses(answer) == {ANNOUNCED}
        assert "c=IN IP4 127.0.0.1" in answer
        await party.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        async with asyncio.timeout(20):
            while party.connectionState != "connected":
                await asyncio.sleep(0.05)
    finally:
        await party.close()
        await call.close()


def test_nothing_changes_without_an_announced_address() -> None:
    sdp = "v=0\r\nc=IN IP4 10.1.2.3\r\na=candidate:1 1 udp 2130706431 10.1.2.3 40000 typ host\r\n"
    assert announce(sdp, "") == sdp
    assert host_addresses(announce(sdp, "2001:db8::7")) == set()  # another family: not reachable, dropped
