"""Pre-connect: both legs negotiate and connect while the phone rings, nothing of either party
reaches the other before the host accepts, and the call is live at the accept. A host who does
not take the call gives up only their own leg; the shopper's leg waits for the next host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tandem.devstack.bots import Bot
from tandem.devstack.nats import NatsServer
from tandem.v1 import client_pb2, common_pb2

from .conftest import FAST, Tandem, available_host, request_consult, running_tandem

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

S = common_pb2
RING_TIMEOUT_S = 8
# Long enough that a pre-connected call's media, were it forwarded, would have been counted.
HELD_FOR_S = 1.5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tandem(
    module_nats: NatsServer, module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tandem]:
    """The stack with a ring long enough for two aiortc legs to connect on a busy machine."""
    signaling = {**FAST["signaling"], "TANDEM_SIGNALING_RING_TIMEOUT_S": str(RING_TIMEOUT_S),
                 "TANDEM_SIGNALING_QUEUE_TIMEOUT_S": "30"}  # fmt: skip
    async with running_tandem(
        module_nats, module_database, tmp_path_factory.mktemp("logs"), {**FAST, "signaling": signaling}
    ) as stack:
        yield stack


async def connected(bot: Bot, timeout_s: float = 30.0) -> None:
    """Until the bot's peer connection to the worker is up (ICE and DTLS done)."""
    async with asyncio.timeout(timeout_s):
        while bot.pc is None or bot.pc.connectionState != "connected":
            await asyncio.sleep(0.05)


async def packets_sent(bot: Bot) -> int:
    assert bot.pc is not None
    stats = await bot.pc.getStats()
    return sum(getattr(s, "packetsSent", 0) for s in stats.values() if s.type == "outbound-rtp")


async def preconnect(host: Bot, shopper: Bot, call_id: str, *, shopper_offers: bool = True) -> None:
    """What a fast client does: the shopper offers at RINGING, the host at the invite."""
    invite = (await host.expect("invite", call_id=call_id)).invite
    assert invite.media_ready
    ringing = (await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_RINGING)).call_update
    assert ringing.media_ready
    offers = [host.start_media(call_id, tone_hz=660, shade=200)]
    if shopper_offers:
        offers.append(shopper.start_media(call_id, tone_hz=440, shade=40))
    await asyncio.gather(*offers)
    await asyncio.gather(connected(host), connected(shopper))


async def preconnected_call(t: Tandem, host_user: str, shopper_user: str, language: str) -> tuple[Bot, Bot, str]:
    """A call ringing a host who alone speaks `language`, both legs connected (host, shopper, call id)."""
    host = await available_host(t, host_user, language)
    shopper = await t.bot("shopper", shopper_user)
    call_id = await request_consult(shopper, language)
    await preconnect(host, shopper, call_id)
    return host, shopper, call_id


async def test_a_preconnected_call_carries_nothing_before_the_accept_and_is_live_at_it(tandem_bots: Tandem) -> None:
    t = tandem_bots
    host, shopper, call_id = await preconnected_call(t, "host-pre", "shopper-pre", "fi")

    # Both legs are up and both parties send; the worker holds it all.
    await asyncio.sleep(HELD_FOR_S)
    assert await packets_sent(host) > 0
    assert await packets_sent(shopper) > 0
    assert shopper.media.frames == {"audio": 0, "video": 0}, "the host reached the shopper before accepting"
    assert host.media.frames == {"audio": 0, "video": 0}, "the shopper reached the host before the accept"

    await host.send(accept=client_pb2.Accept(call_id=call_id))
    for bot in (host, shopper):
        update = (await bot.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTING)).call_update
        assert update.media_ready
        await bot.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTED, timeout_s=10)
    # No offer after the accept: the media that was negotiated while ringing flows.
    await asyncio.wait_for(asyncio.gather(host.media.first_video.wait(), shopper.media.first_video.wait()), 20)
    await asyncio.wait_for(asyncio.gather(host.media.first_audio.wait(), shopper.media.first_audio.wait()), 20)
    await shopper.send(hangup=client_pb2.Hangup(call_id=call_id))
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)


async def test_a_decline_frees_the_hosts_leg_and_the_next_host_reuses_the_shoppers(tandem_bots: Tandem) -> None:
    t = tandem_bots
    calls_before = await t.worker_metric("tandem_media_calls_total")
    first, shopper, call_id = await preconnected_call(t, "host-declines", "shopper-reringing", "et")
    shopper_pc = shopper.pc

    second = await available_host(t, "host-accepts", "et")
    await first.send(decline=client_pb2.Decline(call_id=call_id))
    await first.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_QUEUED)
    # The next host pre-connects; the shopper, already connected, does not offer again.
    await preconnect(second, shopper, call_id, shopper_offers=False)
    assert shopper.pc is shopper_pc
    assert shopper_pc is not None
    assert shopper_pc.connectionState == "connected"
    await asyncio.sleep(HELD_FOR_S)
    assert shopper.media.frames == {"audio": 0, "video": 0}

    await second.send(accept=client_pb2.Accept(call_id=call_id))
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTED, timeout_s=10)
    await asyncio.wait_for(asyncio.gather(second.media.first_video.wait(), shopper.media.first_video.wait()), 20)
    assert first.media.frames == {"audio": 0, "video": 0}, "the host who declined saw the call"
    # One worker slot for the whole call, however many hosts it rang.
    assert await t.worker_metric("tandem_media_calls_total") == calls_before + 1
    await shopper.send(hangup=client_pb2.Hangup(call_id=call_id))
    await second.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)


async def test_a_ring_timeout_frees_the_hosts_leg_and_a_cancel_frees_the_worker(tandem_bots: Tandem) -> None:
    t = tandem_bots
    active_before = await t.worker_metric("tandem_media_calls_active")
    host, shopper, call_id = await preconnected_call(t, "host-asleep", "shopper-waits", "lv")
    assert await t.worker_metric("tandem_media_calls_active") == active_before + 1

    update = await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, timeout_s=RING_TIMEOUT_S + 10)
    assert update.call_update.reason == S.END_REASON_RING_TIMEOUT
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_QUEUED)
    # The worker closed the host's leg: the host's peer connection loses its far end.
    assert host.pc is not None
    async with asyncio.timeout(30):
        while host.pc.connectionState == "connected":
            await asyncio.sleep(0.1)

    await shopper.send(cancel=client_pb2.Cancel(call_id=call_id))
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)
    async with asyncio.timeout(10):
        while await t.worker_metric("tandem_media_calls_active") != active_before:
            await asyncio.sleep(0.1)


async def test_a_party_whose_network_changed_offers_a_new_transport_and_the_call_goes_on(tandem_bots: Tandem) -> None:
    t = tandem_bots
    host, shopper, call_id = await preconnected_call(t, "host-steady", "shopper-on-the-move", "hu")
    await host.send(accept=client_pb2.Accept(call_id=call_id))
    for bot in (host, shopper):
        await bot.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTED, timeout_s=10)
    await asyncio.wait_for(asyncio.gather(host.media.first_video.wait(), shopper.media.first_video.wait()), 20)
    restarts = await t.worker_metric("tandem_media_leg_restarts_total")

    # Wi-Fi to mobile: the shopper's old transport is gone; a new peer connection offers with restart.
    await shopper.restart_media(call_id, tone_hz=440, shade=40, restart=True)
    before = {bot.name: dict(bot.media.frames) for bot in (host, shopper)}
    # A second of video each way after the restart, the host doing nothing.
    await asyncio.wait_for(_frames_beyond(before, host, shopper, video=30, audio=50), 20)
    assert await t.worker_metric("tandem_media_leg_restarts_total") == restarts + 1
    unexpected = [
        e
        for bot in (host, shopper)
        for e in bot.inbox
        if e.HasField("error") or e.HasField("renegotiate") or e.call_update.state == S.CALL_STATE_ENDED
    ]
    assert unexpected == []
    await shopper.send(hangup=client_pb2.Hangup(call_id=call_id))
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, reason=S.END_REASON_HANGUP)


async def _frames_beyond(before: dict[str, dict[str, int]], *bots: Bot, video: int, audio: int) -> None:
    while any(
        bot.media.frames["video"] < before[bot.name]["video"] + video
        or bot.media.frames["audio"] < before[bot.name]["audio"] + audio
        for bot in bots
    ):
        await asyncio.sleep(0.05)
