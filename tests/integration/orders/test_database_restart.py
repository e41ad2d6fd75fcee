"""Checkout through a PostgreSQL restart: every checkout is answered or refused as retryable, the
client's retry with the same key yields exactly one order, the pool recovers, readiness follows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from tandem.devstack.postgres import PostgresServer
from tandem.orders.commerce import Commerce
from tandem.orders.database import Database, is_transient
from tandem.orders.errors import CheckoutInFlightError, DatabaseUnavailableError, RetryableError
from tandem.orders.schema import apply_schema
from tandem.orders.settings import Settings
from tandem.v1 import common_pb2, orders_pb2

pytestmark = pytest.mark.integration

A = TypeVar("A")
R = TypeVar("R")


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, to restart."""
    with PostgresServer(tmp_path / "pg") as server:
        yield server


@pytest.fixture
async def database(own_postgres: PostgresServer) -> AsyncIterator[Database]:
    settings = Settings(database_url=own_postgres.url, db_probe_interval_s=0.2, db_connect_timeout_s=1.0)
    database = await Database.open(settings)
    async with database.pool.acquire() as conn:
        await apply_schema(conn)
    yield database
    await database.close()


async def retrying(call: Callable[[A], Awaitable[R]], request: A) -> tuple[R, int]:
    """What a client does: on a retryable error, wait retry_after_s and send the same request again.
    Returns the reply and how many retryable errors it took."""
    refusals = 0
    while True:
        try:
            return await call(request), refusals
        except RetryableError as exc:
            refusal = exc
        assert refusal.to_proto().retry_after_s >= 1
        refusals += 1
        await asyncio.sleep(refusal.retry_after_s)


async def test_checkouts_through_a_postgres_restart_place_each_order_once(
    database: Database, own_postgres: PostgresServer
) -> None:
    commerce = Commerce(database.pool, lock_timeout_ms=200, max_quantity=99, max_lines=50)
    product_card = database.guarded(commerce.product_card)
    change_cart = database.guarded(commerce.change_cart)
    checkout = database.guarded(commerce.checkout)
    answered: dict[str, str] = {}  # idempotency key -> order id
    refusals = 0
    stop = asyncio.Event()

    async def shopper(n: int) -> None:
        nonlocal refusals
        while not stop.is_set():
            call_id, key = f"call-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
            change = orders_pb2.CartChange(call_id=call_id, product_id="sku-earbuds", quantity=1 + n, market="DE")
            _, refused = await retrying(change_cart, change)
            refusals += refused
            request = orders_pb2.CheckoutRequest(call_id=call_id, shopper_id=f"s{n}", host_id="h", idempotency_key=key)
            reply, refused = await retrying(checkout, request)
            refusals += refused
            assert reply.order_id, reply
            answered[key] = reply.order_id
            # The same key again, later: the same order, never a second one.
            assert (await retrying(checkout, request))[0].order_id == reply.order_id

    shoppers = [asyncio.create_task(shopper(n)) for n in range(6)]

    async def until_answered(count: int) -> None:
        while len(answered) < count:
            if failed := [task for task in shoppers if task.done()]:
                await failed[0]  # a shopper got an answer that is neither an order nor retryable
            await asyncio.sleep(0.01)

    await until_answered(12)
    readiness: list[tuple[float, bool]] = []

    async def watch_readiness() -> None:
        while True:
            readiness.append((time.monotonic(), database.reachable))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_readiness())
    watcher_of_probe = asyncio.create_task(database.watch())
    stopping_at = time.monotonic()
    await asyncio.to_thread(own_postgres.stop, mode="fast")  # ends every session mid-transaction
    await asyncio.to_thread(own_postgres.start)
    back_at = time.monotonic()
    await until_answered(len(answered) + 12)  # checkouts go on after the restart
    stop.set()
    await asyncio.wait_for(asyncio.gather(*shoppers), 30)
    lost_at = next(at for at, ok in readiness if not ok)
    recovered_at = next(at for at, ok in readiness if at > lost_at and ok)
    watcher.cancel()
    watcher_of_probe.cancel()

    assert refusals > 0  # the restart did hit requests in flight; they were refused as retryable
    assert database.reachable  # readiness saw the database lost, and recovered
    orders = await database.pool.fetch("SELECT order_id::text FROM orders")
    assert sorted(r["order_id"] for r in orders) == sorted(answered.values())  # exactly one order per key
    assert await database.pool.fetchval("SELECT count(*) FROM outbox") == len(answered)
    # The pool holds no broken connection: every one of them works.
    conns = [await database.pool.acquire() for _ in range(database.pool.get_max_size())]
    assert [await c.fetchval("SELECT 1") for c in conns] == [1] * len(conns)
    for c in conns:
        await database.pool.release(c)
    card = await product_card(orders_pb2.ProductCardRequest(call_id="c", product_id="sku-earbuds", market="DE"))
    assert card.product.price.currency == "EUR"
    print(
        f"postgres restart: {len(answered)} checkouts, {refusals} retryable refusals, not ready "
        f"{lost_at - stopping_at:.2f} s after the stop began, ready {recovered_at - back_at:.2f} s after it was back"
    )


async def test_a_request_while_postgres_is_down_is_unavailable_with_retry_after(
    database: Database, own_postgres: PostgresServer
) -> None:
    checkout = database.guarded(Commerce(database.pool, lock_timeout_ms=200, max_quantity=99, max_lines=50).checkout)
    own_postgres.stop(mode="fast")
    request = orders_pb2.CheckoutRequest(call_id="c", shopper_id="s", host_id="h", idempotency_key="k")
    with pytest.raises(DatabaseUnavailableError) as info:
        await checkout(request)
    error = info.value.to_proto()
    assert error.code == common_pb2.ERROR_CODE_UNAVAILABLE
    assert error.retry_after_s == 1
    assert not await database.probe()
    assert not database.reachable
    own_postgres.start()
    assert await database.probe()
    assert (await checkout(request)).error.code == common_pb2.ERROR_CODE_INVALID_STATE  # the cart is empty


def test_only_a_lost_connection_counts_as_unavailable() -> None:
    def raised(exc: Exception, *, while_handling: Exception | None = None, suppress: bool = False) -> Exception:
        try:
            try:
                raise while_handling or RuntimeError("nothing")
            except Exception:
                if suppress:
                    raise exc from None
                raise exc  # noqa: B904 - the context is the point
        except Exception as caught:
            return caught

    def lost() -> Exception:
        return asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    def rollback() -> Exception:
        return asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")

    assert is_transient(lost())
    assert is_transient(ConnectionRefusedError())
    assert is_transient(raised(rollback(), while_handling=lost()))
    assert not is_transient(rollback())  # by itself, a misuse of the driver
    assert not is_transient(raised(rollback(), while_handling=lost(), suppress=True))
    assert not is_transient(raised(CheckoutInFlightError("s"), while_handling=lost()))  # already an answer
    assert not is_transient(asyncpg.UniqueViolationError("duplicate key"))
