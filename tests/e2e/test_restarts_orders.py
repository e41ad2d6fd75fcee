"""Fault trials: nats-server and PostgreSQL restarted under traffic, every service a real process.

Orders must come out whole: every order placed has exactly one `OrderPlaced` in `TANDEM_ORDERS`,
every order a client was told about exists, no checkout placed two orders, and every consultation
row agrees with the call facts in `TANDEM_CALLS`. The figures are printed (`-s`) and recorded in
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import aiohttp
import asyncpg
import nats.errors
import pytest
from google.protobuf.message import Message

from tandem.common import subjects
from tandem.common.bus import ERROR_HEADER, Bus, BusConfig
from tandem.common.errors import TandemError
from tandem.devstack.consultation import connect_bots, run_consultation
from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.devstack.postgres import PostgresServer
from tandem.devstack.stack import ServiceSpec, is_ready, supervised
from tandem.v1 import calls_pb2, common_pb2, orders_pb2

from .conftest import FAST, running_tandem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# A call fact in flight to a connection the restart cut is redelivered after the consumer's ack wait.
TRIAL = {**FAST, "orders": {**FAST["orders"], "TANDEM_ORDERS_CONSUMER_ACK_WAIT_S": "3"}}

E = common_pb2
# What a client retries, with the same idempotency key: the service or its database is away.
RETRYABLE = {E.ERROR_CODE_UNAVAILABLE, E.ERROR_CODE_TIMEOUT, E.ERROR_CODE_IDEMPOTENCY_KEY_IN_FLIGHT}


@dataclass
class Checkouts:
    """What the clients saw: orders answered, retryable refusals (with their retry_after_s)."""

    answered: dict[str, str] = field(default_factory=dict)  # idempotency key -> order id
    answered_at: list[float] = field(default_factory=list)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    retry_after_s: set[int] = field(default_factory=set)


async def ask(bus: Bus, subject: str, request: Message, reply: Message, sink: Checkouts) -> None:
    """One request as signaling sends it, retried as a client does until answered: on a retryable
    error after its retry_after_s, on a lost connection or a deadline after 0.2 s."""
    while True:
        try:
            msg = await bus.client.request(subject, request.SerializeToString(), timeout=5)
        except nats.errors.Error as exc:  # no responders, timeout, reconnecting
            sink.refusals[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
            continue
        if not (msg.headers and ERROR_HEADER in msg.headers):
            reply.ParseFromString(msg.data)
            return
        error = common_pb2.Error.FromString(msg.data)
        assert error.code in RETRYABLE, error
        sink.refusals[E.ErrorCode.Name(error.code)] += 1
        sink.retry_after_s.add(error.retry_after_s)
        await asyncio.sleep(error.retry_after_s or 0.2)


async def checkout_loop(bus: Bus, shopper: str, sink: Checkouts, stop: asyncio.Event) -> None:
    """A shopper buying again and again: a cart line, then a checkout with a fresh key."""
    while not stop.is_set():
        call_id, key = f"c-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        change = orders_pb2.CartChange(call_id=call_id, shopper_id=shopper, product_id="sku-earbuds", quantity=1)
        await ask(bus, subjects.ORDERS_CART, change, orders_pb2.CartReply(), sink)
        request = orders_pb2.CheckoutRequest(call_id=call_id, shopper_id=shopper, host_id="h", idempotency_key=key)
        reply = orders_pb2.CheckoutReply()
        await ask(bus, subjects.ORDERS_CHECKOUT, request, reply, sink)
        assert reply.order_id, reply
        sink.answered[key] = reply.order_id
        sink.answered_at.append(time.monotonic())


async def call_facts_loop(bus: Bus, stop: asyncio.Event, published: list[str]) -> None:
    """Call lifecycles published as signaling does (`Nats-Msg-Id` = call id and sequence), each fact
    retried until acknowledged: the consultations consumer must record every one."""
    stages = (E.CALL_STATE_REQUESTED, E.CALL_STATE_RINGING, E.CALL_STATE_CONNECTED, E.CALL_STATE_ENDED)
    while not stop.is_set():
        call_id = f"facts-{uuid.uuid4().hex[:12]}"
        for seq, state in enumerate(stages, 1):
            event = calls_pb2.CallEvent(
                event_id=f"{call_id}:{seq}", call_id=call_id, state=state, shopper_id="s", host_id="h",
                category="beauty", language="en", market="DE",
                reason=E.END_REASON_HANGUP if state == E.CALL_STATE_ENDED else E.END_REASON_UNSPECIFIED,
            )  # fmt: skip
            event.at.GetCurrentTime()
            while True:
                try:
                    await bus.publish_fact(subjects.join(subjects.CALL_EVENTS, call_id), event, msg_id=event.event_id)
                    break
                except TandemError:
                    await asyncio.sleep(0.2)
        published.append(call_id)
        await asyncio.sleep(0.02)


async def order_events(bus: Bus) -> collections.Counter[str]:
    """`OrderPlaced` messages in the stream, per order id."""
    info = await bus.js.stream_info(subjects.ORDERS_STREAM.name, subjects_filter=f"{subjects.ORDER_EVENTS}.>")
    prefix = f"{subjects.ORDER_EVENTS}."
    return collections.Counter({s.removeprefix(prefix): n for s, n in (info.state.subjects or {}).items()})


async def settled(db: asyncpg.Pool, bus: Bus, *, timeout_s: float = 20.0) -> float:
    """Seconds until the outbox is empty and the consultations consumer has acked everything."""
    start = time.monotonic()
    while time.monotonic() < start + timeout_s:
        backlog = await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        consumer = await bus.js.consumer_info(subjects.CALLS_STREAM.name, "orders-consultations")
        if backlog == 0 and consumer.num_pending == 0 and consumer.num_ack_pending == 0:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"not settled: outbox backlog {backlog}, consumer {consumer}")


async def assert_orders_whole(db: asyncpg.Pool, bus: Bus, sink: Checkouts) -> tuple[int, int, int]:
    """0 lost, 0 duplicated; returns (orders, lost, duplicated) for the record."""
    orders = {r["order_id"] for r in await db.fetch("SELECT order_id::text FROM orders")}
    events = await order_events(bus)
    lost = [o for o in orders if events[o] == 0]
    duplicated = [o for o, n in events.items() if n > 1]
    assert set(sink.answered.values()) <= orders  # every order a client was told about exists
    assert len(set(sink.answered.values())) == len(sink.answered)  # no two keys share an order
    assert not lost
    assert not duplicated
    assert set(events) == orders
    # One order per key, one key per order: no retry of a key placed a second order.
    stored = [r["response"] for r in await db.fetch("SELECT response FROM idempotency_keys")]
    ordered = [orders_pb2.CheckoutReply.FromString(response).order_id for response in stored]
    assert sorted(o for o in ordered if o) == sorted(orders)
    return len(orders), len(lost), len(duplicated)


def assert_no_task_died(log: Path) -> None:
    """No background loop (the outbox relay, a consumer, the database probe) ended on an error."""
    assert "background task failed" not in log.read_text()


async def call_facts(bus: Bus) -> dict[str, list[calls_pb2.CallEvent]]:
    """Every call event in `TANDEM_CALLS`, per call."""
    info = await bus.js.stream_info(subjects.CALLS_STREAM.name)
    facts: dict[str, list[calls_pb2.CallEvent]] = collections.defaultdict(list)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            stored = await bus.js.get_msg(subjects.CALLS_STREAM.name, seq)
            assert stored.data is not None
            event = calls_pb2.CallEvent.FromString(stored.data)
            facts[event.call_id].append(event)
    return facts


async def assert_consultations_complete(db: asyncpg.Pool, bus: Bus) -> int:
    """Each call's row holds what its facts say: its final state and a timestamp for every stage."""
    facts = await call_facts(bus)
    rows = {r["call_id"]: r for r in await db.fetch("SELECT * FROM consultations")}
    assert set(rows) == set(facts)
    stage_column = {
        E.CALL_STATE_REQUESTED: "requested_at", E.CALL_STATE_RINGING: "ringing_at",
        E.CALL_STATE_CONNECTED: "connected_at", E.CALL_STATE_ENDED: "ended_at",
    }  # fmt: skip
    for call_id, events in facts.items():
        row = rows[call_id]
        ended = [e for e in events if e.state == E.CALL_STATE_ENDED]
        final = ended[0] if ended else max(events, key=lambda e: e.at.ToDatetime())
        assert row["state"] == E.CallState.Name(final.state), (call_id, events)
        for event in events:
            if event.state in stage_column:
                assert row[stage_column[event.state]] is not None, (call_id, event)
        if ended:
            assert row["end_reason"] == E.EndReason.Name(ended[0].reason)
            assert row["ended_at"] == ended[0].at.ToDatetime(tzinfo=UTC)
    return len(facts)


@contextlib.asynccontextmanager
async def client_bus(url: str) -> AsyncIterator[Bus]:
    bus = Bus(BusConfig(servers=[url], name="trial-client", max_reconnect_attempts=-1))
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


async def readiness(urls: dict[str, str]) -> list[str]:
    """The services whose /readyz is not 200 (a refused connection counts as not ready)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        return [name for name, url in urls.items() if not await is_ready(http, url)]


async def until_ready(urls: dict[str, str], since: float, timeout_s: float = 30.0) -> float:
    """Seconds from `since` until every service is ready."""
    deadline = time.monotonic() + timeout_s
    while await readiness(urls):
        assert time.monotonic() < deadline, await readiness(urls)
        await asyncio.sleep(0.05)
    return time.monotonic() - since


# One language per consultation loop: matchmaking matches within a language, so loops never meet.
RESTART_LANGUAGES = ("et", "lv", "lt", "fi")


async def consultation_loop(base_url: str, n: int, stop: asyncio.Event, outcome: collections.Counter[str]) -> None:
    """Bot consultations one after another (tap, match, ring, media, card, cart, checkout, hang up).
    One that the restart interrupts is abandoned (the call's fate is signaling's to prove)."""
    round_ = 0
    while not stop.is_set():
        round_ += 1
        bots = []
        try:
            bots = list(await connect_bots(base_url, f"r{n}-{round_}"))
            timeline = await asyncio.wait_for(run_consultation(*bots, language=RESTART_LANGUAGES[n]), 20)
            outcome["completed with an order" if timeline.order_id else "completed"] += 1
        except (TimeoutError, TandemError, aiohttp.ClientError) as exc:
            outcome[f"interrupted ({type(exc).__name__})"] += 1
        finally:
            for bot in bots:
                await bot.close()


async def test_nats_restarted_mid_traffic_loses_and_duplicates_no_order(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()
    database_url = postgres_server.create_database(f"restart_{uuid.uuid4().hex[:12]}")
    try:
        async with (
            running_tandem(nats, database_url, tmp_path, TRIAL) as t,
            client_bus(nats.url) as bus,
        ):
            db = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
            sink, stop, consultations = Checkouts(), asyncio.Event(), collections.Counter[str]()
            facts: list[str] = []
            publishers = [asyncio.create_task(checkout_loop(bus, f"shopper-{n}", sink, stop)) for n in range(4)]
            publishers.append(asyncio.create_task(call_facts_loop(bus, stop, facts)))
            calls = [
                asyncio.create_task(consultation_loop(t.signaling_urls[0], n, stop, consultations)) for n in range(2)
            ]
            traffic = publishers + calls
            await until(lambda: len(sink.answered) >= 20 and bool(consultations), traffic)

            before = len(sink.answered)
            stopped_at = time.monotonic()
            await asyncio.to_thread(nats.stop)
            await asyncio.sleep(1.0)  # a second with no server at all
            await asyncio.to_thread(nats.start)  # same port, same JetStream store
            back_at = time.monotonic()
            ready_s = await until_ready(t.services, back_at)
            await until(lambda: sink.answered_at[-1] > back_at, traffic)
            first_checkout_s = first_answer_after(sink, back_at)
            await asyncio.sleep(4)  # traffic goes on after the restart
            stop.set()
            for consultation in calls:  # hang up mid-call: signaling ends it after its reconnect grace
                await cancel(consultation)
            await asyncio.wait_for(asyncio.gather(*publishers), 30)
            await asyncio.sleep(2)  # the abandoned calls' last facts
            assert consultations["completed with an order"] > 0
            assert len(sink.answered) > before + 10  # the restart hit traffic, which went on

            settled_s = await settled(db, bus)
            placed, lost, duplicated = await assert_orders_whole(db, bus, sink)
            assert_no_task_died(t.log)
            recorded = await assert_consultations_complete(db, bus)
            assert recorded > len(facts)  # the published lifecycles and the bots' calls
            await db.close()
            print(
                f"\nnats restart: down {back_at - stopped_at:.1f} s; all ready {ready_s:.2f} s and first checkout "
                f"{first_checkout_s:.2f} s after it was back; {placed} orders ({len(sink.answered)} answered "
                f"to clients), {lost} lost, {duplicated} duplicate OrderPlaced; {recorded} consultations complete "
                f"({len(facts)} published lifecycles, the rest bot calls); "
                f"client retries {dict(sink.refusals)}; bot consultations {dict(consultations)}; settled "
                f"{settled_s:.1f} s after the traffic stopped"
            )
    finally:
        nats.stop()


async def test_postgres_restarted_during_checkouts_answers_or_retries_each_once(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    with PostgresServer(tmp_path / "pg") as postgres:
        orders = ServiceSpec(
            "orders", "tandem.orders", "ORDERS", free_port(),
            {"TANDEM_ORDERS_DATABASE_URL": postgres.url, "TANDEM_ORDERS_DB_PROBE_INTERVAL_S": "0.2",
             **TRIAL["orders"]},
        )  # fmt: skip
        async with (
            supervised([orders], nats_server.url, tmp_path / "orders.log", drain_timeout_s=3) as supervisor,
            client_bus(nats_server.url) as bus,
        ):
            sink, stop = Checkouts(), asyncio.Event()
            traffic = [asyncio.create_task(checkout_loop(bus, f"shopper-{n}", sink, stop)) for n in range(6)]
            await until(lambda: len(sink.answered) >= 20, traffic)

            before = len(sink.answered)
            saw_unready = False

            async def watch_readiness() -> None:
                nonlocal saw_unready
                while True:
                    saw_unready |= bool(await readiness({"orders": orders.url}))
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_readiness())
            stopped_at = time.monotonic()
            await asyncio.to_thread(postgres.stop, mode="fast")  # a routine restart: sessions ended
            await asyncio.sleep(1.0)
            await asyncio.to_thread(postgres.start)
            back_at = time.monotonic()
            await until(lambda: sink.answered_at[-1] > back_at, traffic)
            first_checkout_s = first_answer_after(sink, back_at)
            ready_s = await until_ready({"orders": orders.url}, back_at)
            await asyncio.sleep(3)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*traffic), 60)
            await cancel(watcher)
            assert len(sink.answered) > before + 10
            assert sink.refusals["ERROR_CODE_UNAVAILABLE"] > 0  # the restart hit checkouts in flight
            assert sink.retry_after_s == {1}  # each refusal said when to retry
            assert saw_unready  # /readyz reflected the lost database

            db = await asyncpg.create_pool(postgres.url, min_size=1, max_size=2)
            await settled(db, bus)
            placed, lost, duplicated = await assert_orders_whole(db, bus, sink)
            assert_no_task_died(tmp_path / "orders.log")
            await db.close()
        assert supervisor.exit_codes == {"orders": 0}
        print(
            f"\npostgres restart: down {back_at - stopped_at:.1f} s; first checkout {first_checkout_s:.2f} s and "
            f"/readyz {ready_s:.2f} s after it was back; {placed} orders ({len(sink.answered)} answered), "
            f"{lost} lost, {duplicated} duplicated; client retries {dict(sink.refusals)}"
        )


async def until(condition: Callable[[], bool], traffic: list[asyncio.Task[None]]) -> None:
    """Wait for `condition` while the traffic runs; a traffic task that ended early fails the trial."""
    while not condition():
        if ended := [task for task in traffic if task.done()]:
            await ended[0]  # raises what stopped it (an answer neither an order nor retryable)
            raise AssertionError("a traffic task stopped by itself")
        await asyncio.sleep(0.01)


def first_answer_after(sink: Checkouts, at: float) -> float:
    """Seconds from `at` to the first checkout answered after it."""
    return min(t for t in sink.answered_at if t > at) - at


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel and wait."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_orders_killed_mid_traffic_resumes_its_relay_and_consumer_without_loss_or_duplicates(
    tmp_path: Path, nats_server: NatsServer, postgres_server: PostgresServer
) -> None:
    database_url = postgres_server.create_database(f"kill_{uuid.uuid4().hex[:12]}")
    orders = ServiceSpec(
        "orders", "tandem.orders", "ORDERS", free_port(),
        {"TANDEM_ORDERS_DATABASE_URL": database_url, **TRIAL["orders"]},
    )  # fmt: skip
    async with client_bus(nats_server.url) as bus:
        sink, stop, facts = Checkouts(), asyncio.Event(), list[str]()
        async with supervised([orders], nats_server.url, tmp_path / "orders-1.log", drain_timeout_s=3) as first:
            traffic = [asyncio.create_task(checkout_loop(bus, f"shopper-{n}", sink, stop)) for n in range(4)]
            traffic.append(asyncio.create_task(call_facts_loop(bus, stop, facts)))
            await until(lambda: len(sink.answered) >= 30, traffic)
            first.procs["orders"].kill()  # kill -9: checkouts, relay sweeps and call facts in flight
            killed_at = time.monotonic()
            await first.procs["orders"].wait()
        before = len(sink.answered)
        async with supervised([orders], nats_server.url, tmp_path / "orders-2.log", drain_timeout_s=3) as second:
            ready_at = time.monotonic()
            await until(lambda: sink.answered_at[-1] > ready_at, traffic)
            ready_s = ready_at - killed_at
            first_checkout_s = first_answer_after(sink, ready_at) + ready_s  # answered by the new process
            await asyncio.sleep(3)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*traffic), 30)
            assert len(sink.answered) > before + 10  # the new process took the traffic over
            db = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
            settled_s = await settled(db, bus)
            placed, lost, duplicated = await assert_orders_whole(db, bus, sink)
            for log in ("orders-1.log", "orders-2.log"):
                assert_no_task_died(tmp_path / log)
            recorded = await assert_consultations_complete(db, bus)
            await db.close()
        assert first.exit_codes == {"orders": -9}
        assert second.exit_codes == {"orders": 0}
    assert recorded == len(facts)
    print(
        f"\norders kill -9: the new process ready {ready_s:.2f} s and the first checkout {first_checkout_s:.2f} s "
        f"after the kill; {placed} orders ({len(sink.answered)} answered), {lost} lost, {duplicated} duplicate "
        f"OrderPlaced; {recorded} consultations complete; client retries {dict(sink.refusals)}; settled "
        f"{settled_s:.1f} s after the traffic stopped"
    )
