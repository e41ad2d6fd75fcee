"""A consultation end to end with two aiortc bots: tap → match → ring → live call → card → order."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tandem.common import subjects
from tandem.common.bus import Bus, BusConfig
from tandem.v1 import client_pb2, common_pb2

from .conftest import Tandem

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

S = common_pb2


async def published_orders(tandem: Tandem, order_id: str) -> int:
    bus = Bus(BusConfig(servers=[tandem.nats.url], name="e2e-check"))
    await bus.connect()
    subject = subjects.join(subjects.ORDER_EVENTS, order_id)
    info = await bus.js.stream_info(subjects.ORDERS_STREAM.name, subjects_filter=subject)
    await bus.close()
    return (info.state.subjects or {}).get(subject, 0)


async def test_a_consultation_connects_relays_media_and_places_one_order(tandem_bots: Tandem) -> None:
    t = tandem_bots
    # The host's socket is on the second signaling instance: every frame crosses NATS.
    host = await t.bot("host", "host-happy", instance=1)
    await host.send(
        host_availability=client_pb2.HostAvailability(
            available=True, languages=["en"], categories=["beauty"], markets=["US"], time_zone="America/New_York"
        )
    )
    shopper = await t.bot("shopper", "shopper-happy", instance=0, binary=True)
    await shopper.send(
        consult_request=client_pb2.ConsultRequest(
            product_id="sku-serum-30ml", category="beauty", language="en-US", market="US"
        )
    )
    call_id = (await shopper.expect("queue_update")).queue_update.call_id
    invite = (await host.expect("invite", call_id=call_id)).invite
    assert (invite.language, invite.market, invite.returning_customer) == ("en-US", "US", False)
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_RINGING)

    await host.send(accept=client_pb2.Accept(call_id=call_id))
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTING)
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTING)
    await asyncio.gather(
        shopper.start_media(call_id, tone_hz=440, shade=40), host.start_media(call_id, tone_hz=660, shade=200)
    )
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTED, timeout_s=20)
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTED, timeout_s=20)

    media = [shopper.media.first_video, shopper.media.first_audio, host.media.first_video, host.media.first_audio]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in media)), 30)
    before = dict(shopper.media.frames), dict(host.media.frames)
    await asyncio.sleep(1.0)
    for bot, seen in zip((shopper, host), before, strict=True):
        assert bot.media.frames["video"] > seen["video"], f"{bot.name}: video stopped"
        assert bot.media.frames["audio"] > seen["audio"], f"{bot.name}: audio stopped"

    await host.send(push_product_card=client_pb2.PushProductCard(call_id=call_id, product_id="sku-serum-30ml"))
    card = (await shopper.expect("product_card", call_id=call_id)).product_card
    assert card.product.price == common_pb2.Money(amount_minor=3900, currency="USD")
    await host.expect("product_card", call_id=call_id)

    await shopper.send(add_to_cart=client_pb2.AddToCart(call_id=call_id, product_id="sku-serum-30ml", quantity=2))
    cart = (await shopper.expect("cart_update", call_id=call_id)).cart_update
    assert cart.total == common_pb2.Money(amount_minor=7800, currency="USD")

    key = str(uuid.uuid4())
    for _ in range(3):  # the shopper's app retries, e.g. after a flaky network
        await shopper.send(checkout=client_pb2.Checkout(call_id=call_id, idempotency_key=key))
    results = [(await shopper.expect("checkout_result", call_id=call_id)).checkout_result for _ in range(3)]
    order_ids = {r.order_id for r in results}
    assert len(order_ids) == 1
    assert all(r.total.amount_minor == 7800 and not r.HasField("error") for r in results)
    order_id = order_ids.pop()

    conn = await asyncpg.connect(t.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE call_id = $1", call_id) == 1
        for _ in range(100):
            if await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    assert await published_orders(t, order_id) == 1

    await shopper.send(hangup=client_pb2.Hangup(call_id=call_id))
    ended = (await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)).call_update
    assert ended.reason == S.END_REASON_HANGUP
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)

    # Orders recorded the consultation from the call facts.
    conn = await asyncpg.connect(t.database_url)
    try:
        for _ in range(100):
            row = await conn.fetchrow("SELECT * FROM consultations WHERE call_id = $1", call_id)
            if row is not None and row["state"] == "CALL_STATE_ENDED":
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    assert row is not None
    assert (row["shopper_id"], row["host_id"], row["market"]) == ("shopper-happy", "host-happy", "US")
    assert (row["state"], row["end_reason"]) == ("CALL_STATE_ENDED", "END_REASON_HANGUP")
    assert row["requested_at"] <= row["ringing_at"] <= row["connected_at"] <= row["ended_at"]

    # ... and, from the media worker's quality summary, the call's quality beside its conversion.
    conn = await asyncpg.connect(t.database_url)
    try:
        for _ in range(100):
            quality = await conn.fetchrow("SELECT * FROM consultation_quality WHERE call_id = $1", call_id)
            if quality is not None and quality["measured"]:
                break
            await asyncio.sleep(0.05)
        legs = await conn.fetch("SELECT leg, direction FROM call_quality WHERE call_id = $1", call_id)
    finally:
        await conn.close()
    assert quality is not None
    assert quality["measured"]
    assert quality["converted"]
    assert 3.5 < quality["mos_min"] <= 4.5  # loopback: no loss, little delay
    assert {(r["leg"], r["direction"]) for r in legs} == {
        (leg, direction)
        for leg in ("LEG_SHOPPER", "LEG_HOST")
        for direction in ("DIRECTION_INBOUND", "DIRECTION_OUTBOUND")
    }
