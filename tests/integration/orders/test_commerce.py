"""Cards, carts and idempotent checkout against a real PostgreSQL; the outbox into real JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.orders.commerce import Commerce
from tandem.orders.errors import (
    CartFullError,
    CheckoutInFlightError,
    IdempotencyKeyLengthError,
    IdempotencyKeyReusedError,
    ProductNotPricedError,
    QuantityOverLimitError,
)
from tandem.orders.outbox import OutboxRelay
from tandem.orders.schema import apply_schema
from tandem.v1 import common_pb2, orders_pb2

pytestmark = pytest.mark.integration
E = common_pb2


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await apply_schema(conn)
        await apply_schema(conn)  # idempotent
    yield pool
    await pool.close()


@pytest.fixture
def commerce(pool: asyncpg.Pool) -> Commerce:
    return Commerce(pool, lock_timeout_ms=200, max_quantity=99, max_lines=50)


async def fill_cart(commerce: Commerce, call_id: str, market: str = "JP") -> orders_pb2.CartReply:
    await commerce.change_cart(
        orders_pb2.CartChange(call_id=call_id, product_id="sku-earbuds", quantity=1, market=market)
    )
    return await commerce.change_cart(
        orders_pb2.CartChange(call_id=call_id, product_id="sku-serum-30ml", quantity=3, market=market)
    )


async def test_prices_follow_the_market_in_minor_units(commerce: Commerce) -> None:
    card = await commerce.product_card(
        orders_pb2.ProductCardRequest(call_id="c", product_id="sku-earbuds", market="KW")
    )
    assert card.product.price == E.Money(amount_minor=24_000, currency="KWD")  # 24.000 KWD
    cart = await fill_cart(commerce, "c-jp")
    assert cart.total == E.Money(amount_minor=11_800 + 3 * 5_800, currency="JPY")
    with pytest.raises(ProductNotPricedError) as missing:
        await commerce.product_card(orders_pb2.ProductCardRequest(call_id="c", product_id="nope", market="US"))
    assert (missing.value.code, missing.value.product_id, missing.value.currency) == (
        E.ERROR_CODE_NOT_FOUND,
        "nope",
        "USD",
    )
    with pytest.raises(QuantityOverLimitError) as too_many:
        await commerce.change_cart(orders_pb2.CartChange(call_id="c", product_id="sku-earbuds", quantity=100))
    assert (too_many.value.code, too_many.value.quantity, too_many.value.max_quantity) == (
        E.ERROR_CODE_INVALID_ARGUMENT, 100, 99,
    )  # fmt: skip


async def test_a_full_cart_refuses_another_line(pool: asyncpg.Pool) -> None:
    commerce = Commerce(pool, lock_timeout_ms=200, max_quantity=99, max_lines=2)
    await fill_cart(commerce, "c-full")
    with pytest.raises(CartFullError) as full:
        await commerce.change_cart(orders_pb2.CartChange(call_id="c-full", product_id="sku-sneaker-42", quantity=1))
    assert (full.value.code, full.value.max_lines) == (E.ERROR_CODE_INVALID_ARGUMENT, 2)
    assert await pool.fetchval("SELECT count(*) FROM cart_lines WHERE call_id = 'c-full'") == 2


async def test_concurrent_retries_of_one_checkout_place_one_order(commerce: Commerce, pool: asyncpg.Pool) -> None:
    await fill_cart(commerce, "c1")
    request = orders_pb2.CheckoutRequest(call_id="c1", shopper_id="s1", host_id="h1", idempotency_key="k1")
    outcomes = await asyncio.gather(*(commerce.checkout(request) for _ in range(8)), return_exceptions=True)
    replies = [o for o in outcomes if isinstance(o, orders_pb2.CheckoutReply)]
    assert all(isinstance(o, (orders_pb2.CheckoutReply, CheckoutInFlightError)) for o in outcomes)
    in_flight = [o.to_proto() for o in outcomes if isinstance(o, CheckoutInFlightError)]
    assert all(e.code == E.ERROR_CODE_IDEMPOTENCY_KEY_IN_FLIGHT and e.retry_after_s >= 1 for e in in_flight)
    assert len({r.order_id for r in replies}) == 1
    assert await pool.fetchval("SELECT count(*) FROM orders") == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
    # A later retry replays the same order, even though the cart is now empty.
    assert (await commerce.checkout(request)).order_id == replies[0].order_id


async def test_errors_are_replayed_and_a_reused_key_is_refused(commerce: Commerce) -> None:
    empty = orders_pb2.CheckoutRequest(call_id="c-empty", shopper_id="s1", host_id="h1", idempotency_key="k-empty")
    first = await commerce.checkout(empty)
    assert first.error.code == E.ERROR_CODE_INVALID_STATE
    assert await commerce.checkout(empty) == first  # the stored error, replayed
    await fill_cart(commerce, "c-empty")
    with pytest.raises(IdempotencyKeyReusedError) as changed:  # the same key for another cart is another purchase
        await commerce.checkout(empty)
    assert changed.value.code == E.ERROR_CODE_IDEMPOTENCY_KEY_REUSED
    other_call = orders_pb2.CheckoutRequest(call_id="c-other", shopper_id="s1", host_id="h1", idempotency_key="k-empty")
    with pytest.raises(IdempotencyKeyReusedError) as reused:
        await commerce.checkout(other_call)
    assert reused.value.code == E.ERROR_CODE_IDEMPOTENCY_KEY_REUSED
    with pytest.raises(IdempotencyKeyLengthError) as no_key:
        await commerce.checkout(orders_pb2.CheckoutRequest(call_id="c", shopper_id="s1"))
    assert (no_key.value.code, no_key.value.field, no_key.value.length) == (
        E.ERROR_CODE_INVALID_ARGUMENT, "idempotency_key", 0,
    )  # fmt: skip


async def test_a_key_reused_after_the_cart_changed_is_refused_not_replayed(commerce: Commerce) -> None:
    await fill_cart(commerce, "c-again")
    request = orders_pb2.CheckoutRequest(call_id="c-again", shopper_id="s1", host_id="h1", idempotency_key="k-again")
    first = await commerce.checkout(request)
    assert first.order_id
    await commerce.change_cart(
        orders_pb2.CartChange(call_id="c-again", product_id="sku-earbuds", quantity=2, market="JP")
    )
    with pytest.raises(IdempotencyKeyReusedError) as reused:
        await commerce.checkout(request)
    assert reused.value.code == E.ERROR_CODE_IDEMPOTENCY_KEY_REUSED
    fresh = await commerce.checkout(
        orders_pb2.CheckoutRequest(call_id="c-again", shopper_id="s1", host_id="h1", idempotency_key="k-new")
    )
    assert fresh.order_id
    assert fresh.order_id != first.order_id
    assert fresh.total == E.Money(amount_minor=2 * 11_800, currency="JPY")


async def test_quantity_zero_removes_a_line(commerce: Commerce) -> None:
    await fill_cart(commerce, "c-remove")
    cart = await commerce.change_cart(
        orders_pb2.CartChange(call_id="c-remove", product_id="sku-earbuds", quantity=0, market="JP")
    )
    assert [line.product_id for line in cart.lines] == ["sku-serum-30ml"]


async def test_the_outbox_lands_each_order_once_even_if_a_relay_repeats(
    commerce: Commerce, pool: asyncpg.Pool, bus: Bus
) -> None:
    await bus.ensure_stream(subjects.ORDERS_STREAM)
    await fill_cart(commerce, "c-out")
    reply = await commerce.checkout(
        orders_pb2.CheckoutRequest(call_id="c-out", shopper_id="s1", host_id="h1", idempotency_key="k-out")
    )
    relay = OutboxRelay(pool, bus, poll_interval_s=0.1, batch=10)
    assert await relay.sweep() == 1
    # A relay that crashed after publishing but before marking the row re-publishes it.
    await pool.execute("UPDATE outbox SET published_at = NULL")
    assert await relay.sweep() == 1
    assert await relay.sweep() == 0
    subject = subjects.join(subjects.ORDER_EVENTS, reply.order_id)
    info = await bus.js.stream_info(subjects.ORDERS_STREAM.name, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 1
