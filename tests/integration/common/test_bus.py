"""The Bus against a real nats-server."""

from __future__ import annotations

import asyncio
import collections

import nats.errors
import pytest
from nats.js.api import KeyValueConfig

from tandem.common import subjects
from tandem.common.bus import Bus, BusConfig, BusStatus, InvalidSubjectError
from tandem.common.errors import BusTimeoutError, InvalidIdentifierError, NoRespondersError, TandemError
from tandem.common.kv import update_all
from tandem.common.subjects import StreamSpec
from tandem.devstack.nats import NatsServer
from tandem.v1 import common_pb2, matchmaking_pb2

pytestmark = pytest.mark.integration


async def test_request_reply_through_a_queue_group_of_two(bus: Bus, nats_server: NatsServer) -> None:
    second = Bus(BusConfig(servers=[nats_server.url], name="second"))
    await second.connect()
    answered_by: collections.Counter[str] = collections.Counter()

    def responder(name: str):  # type: ignore[no-untyped-def]
        async def handle(request: matchmaking_pb2.MatchRequest) -> matchmaking_pb2.MatchResult:
            answered_by[name] += 1
            return matchmaking_pb2.MatchResult(call_id=request.call_id, host=matchmaking_pb2.MatchedHost(host_id=name))

        return handle

    await bus.serve("t.match", matchmaking_pb2.MatchRequest, responder("a"), queue="q")
    await second.serve("t.match", matchmaking_pb2.MatchRequest, responder("b"), queue="q")
    await second.client.flush()

    replies = await asyncio.gather(
        *(
            bus.request("t.match", matchmaking_pb2.MatchRequest(call_id=str(i)), matchmaking_pb2.MatchResult)
            for i in range(60)
        )
    )
    assert sorted(r.call_id for r in replies) == sorted(str(i) for i in range(60))
    assert sum(answered_by.values()) == 60  # each request answered exactly once
    assert set(answered_by) == {"a", "b"}  # and the group shares the work
    await second.close()


async def test_a_request_nobody_answers_in_time_raises_a_typed_timeout(bus: Bus) -> None:
    async def slow(request: common_pb2.Money) -> common_pb2.Money:
        await asyncio.sleep(5)
        return request

    await bus.serve("t.slow", common_pb2.Money, slow, queue="q")
    with pytest.raises(BusTimeoutError) as info:
        await bus.request("t.slow", common_pb2.Money(), common_pb2.Money, timeout_s=0.2)
    assert info.value.code == common_pb2.ERROR_CODE_TIMEOUT
    assert "t.slow" in str(info.value)


async def test_a_subject_without_responders_is_unavailable(bus: Bus) -> None:
    with pytest.raises(NoRespondersError) as info:
        await bus.request("t.nobody", common_pb2.Money(), common_pb2.Money)
    assert info.value.code == common_pb2.ERROR_CODE_UNAVAILABLE


async def test_a_responder_error_reaches_the_caller_typed(bus: Bus) -> None:
    async def refuse(_: common_pb2.Money) -> common_pb2.Money:
        raise TandemError("out of stock: sku-1", code=common_pb2.ERROR_CODE_OUT_OF_STOCK)

    async def crash(_: common_pb2.Money) -> common_pb2.Money:
        raise ZeroDivisionError

    await bus.serve("t.refuse", common_pb2.Money, refuse, queue="q")
    await bus.serve("t.crash", common_pb2.Money, crash, queue="q")
    with pytest.raises(TandemError) as info:
        await bus.request("t.refuse", common_pb2.Money(), common_pb2.Money)
    assert (info.value.code, info.value.message) == (
        common_pb2.ERROR_CODE_OUT_OF_STOCK,
        "out of stock: sku-1",
    )
    with pytest.raises(TandemError) as crashed:
        await bus.request("t.crash", common_pb2.Money(), common_pb2.Money)
    assert crashed.value.code == common_pb2.ERROR_CODE_INTERNAL
    # The responder survived its handler's crash.
    with pytest.raises(TandemError):
        await bus.request("t.refuse", common_pb2.Money(), common_pb2.Money)


async def test_jetstream_lands_a_repeated_msg_id_once(bus: Bus) -> None:
    spec = StreamSpec(name="T_DEDUP", subjects=("t.facts.>",))
    await bus.ensure_stream(spec)
    await bus.ensure_stream(spec)  # idempotent
    first = await bus.publish_fact("t.facts.1", common_pb2.Money(amount_minor=1), msg_id="outbox-1")
    again = await bus.publish_fact("t.facts.1", common_pb2.Money(amount_minor=1), msg_id="outbox-1")
    other = await bus.publish_fact("t.facts.1", common_pb2.Money(amount_minor=2), msg_id="outbox-2")
    assert again.duplicate
    assert not first.duplicate
    assert not other.duplicate
    info = await bus.js.stream_info("T_DEDUP")
    assert info.state.messages == 2

    received: list[int] = []
    done = asyncio.Event()

    async def handle(money: common_pb2.Money) -> None:
        received.append(money.amount_minor)
        if len(received) == 2:
            done.set()

    bus.consume(spec, "t-consumer", common_pb2.Money, handle)
    await asyncio.wait_for(done.wait(), 5)
    assert received == [1, 2]


async def test_a_failing_stream_handler_gets_the_message_again(bus: Bus) -> None:
    spec = StreamSpec(name="T_RETRY", subjects=("t.retry.>",))
    await bus.ensure_stream(spec)
    attempts = 0
    done = asyncio.Event()

    async def flaky(_: common_pb2.Money) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("database blip")
        done.set()

    bus.consume(spec, "t-retry", common_pb2.Money, flaky)
    await bus.publish_fact("t.retry.1", common_pb2.Money(), msg_id="m-1")
    await asyncio.wait_for(done.wait(), 10)
    assert attempts == 2


async def test_key_value_buckets_hold_shared_state(bus: Bus, nats_server: NatsServer) -> None:
    kv = await bus.key_value("t_presence")
    await kv.put("host-1", b"available")
    other = Bus(BusConfig(servers=[nats_server.url], name="other"))
    await other.connect()
    same = await other.key_value("t_presence")
    assert (await same.get("host-1")).value == b"available"
    await other.close()


async def test_key_value_writes_sent_together_each_get_their_own_outcome(bus: Bus) -> None:
    kv = await bus.key_value("t_together")
    first, second = await kv.put("a", b"1"), await kv.put("b", b"1")
    writes = [("a", b"2", first), ("b", b"2", first), ("b", b"3", second)]
    assert await update_all(bus, "t_together", writes, timeout_s=5) == [second + 1, None, second + 2]
    assert ((await kv.get("a")).value, (await kv.get("b")).value) == (b"2", b"3")
    [missing] = await update_all(bus, "t_no_such_bucket", [("a", b"1", 1)], timeout_s=5)
    assert isinstance(missing, NoRespondersError)


async def test_writes_sent_together_keep_the_outcomes_of_those_sent_before_one_the_connection_refuses(
    bus: Bus,
) -> None:
    kv = await bus.key_value("t_partly")
    first, second = await kv.put("a", b"1"), await kv.put("b", b"1")
    too_large = b"x" * (bus.client.max_payload + 1)
    writes = [("a", b"2", first), ("b", too_large, second), ("b", b"3", second)]
    landed, refused, after = await update_all(bus, "t_partly", writes, timeout_s=5)
    assert landed == second + 1  # sent before the refusal, and awaited
    assert isinstance(refused, nats.errors.MaxPayloadError)
    assert after is refused  # not sent
    assert ((await kv.get("a")).value, (await kv.get("b")).value) == (b"2", b"1")


async def test_a_key_value_write_the_stream_refuses_is_an_unavailable_error(bus: Bus) -> None:
    kv = await bus.js.create_key_value(config=KeyValueConfig(bucket="t_refusing", max_value_size=4))
    revision = await kv.put("a", b"1")
    [refused] = await update_all(bus, "t_refusing", [("a", b"too large", revision)], timeout_s=5)
    assert isinstance(refused, TandemError)
    assert refused.code == common_pb2.ERROR_CODE_UNAVAILABLE
    assert "write refused" in refused.message
    assert (await kv.get("a")).value == b"1"


async def test_a_consumer_keeps_consuming_across_idle_time_and_a_server_restart(
    bus: Bus, nats_server: NatsServer
) -> None:
    spec = StreamSpec(name="T_IDLE", subjects=("t.idle.>",))
    await bus.ensure_stream(spec)
    received: asyncio.Queue[int] = asyncio.Queue()

    async def handle(money: common_pb2.Money) -> None:
        await received.put(money.amount_minor)

    task = bus.consume(spec, "t-idle", common_pb2.Money, handle)
    await asyncio.sleep(2.5)  # several empty fetches
    await bus.publish_fact("t.idle.1", common_pb2.Money(amount_minor=1), msg_id="i-1")
    assert await asyncio.wait_for(received.get(), 10) == 1

    nats_server.stop()
    await asyncio.sleep(1.5)
    nats_server.start()
    for _ in range(100):
        if bus.connected:
            break
        await asyncio.sleep(0.1)
    await bus.publish_fact("t.idle.2", common_pb2.Money(amount_minor=2), msg_id="i-2")
    assert await asyncio.wait_for(received.get(), 15) == 2
    assert not task.done()


async def test_a_subject_the_server_would_refuse_is_refused_here_and_the_connection_stays(bus: Bus) -> None:
    for subject in ["t." + "x" * 5000, "t.a b", "t.\ttab", ""]:
        with pytest.raises(InvalidSubjectError) as info:
            await bus.publish(subject, common_pb2.Money())
        assert info.value.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT
    with pytest.raises(InvalidIdentifierError):
        subjects.join("t", "a.b")
    assert bus.status is BusStatus.CONNECTED


async def test_a_connection_the_server_closes_is_re_established_with_its_subscriptions(bus: Bus) -> None:
    async def echo(request: common_pb2.Money) -> common_pb2.Money:
        return request

    await bus.serve("t.echo", common_pb2.Money, echo, queue="q")
    seen: list[BusStatus] = []
    bus.on_status.append(seen.append)
    # What an unvalidated client id once did: a control line over the server's limit. The server
    # answers -ERR and closes the connection.
    await bus.client.publish("t." + "x" * 5000, b"")
    for _ in range(100):
        if BusStatus.RECONNECTING in seen and bus.status is BusStatus.CONNECTED:
            break
        await asyncio.sleep(0.05)
    assert seen[:1] == [BusStatus.RECONNECTING]
    assert bus.status is BusStatus.CONNECTED
    reply = await bus.request("t.echo", common_pb2.Money(amount_minor=7), common_pb2.Money)
    assert reply.amount_minor == 7


async def wait_connected(bus: Bus) -> None:
    for _ in range(200):
        if bus.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the bus did not reconnect")


async def test_facts_published_through_a_server_restart_land_once_and_are_all_consumed(
    bus: Bus, nats_server: NatsServer
) -> None:
    spec = StreamSpec(name="T_RESTART", subjects=("t.restart.>",))
    await bus.ensure_stream(spec)
    consumed: collections.Counter[int] = collections.Counter()

    async def handle(money: common_pb2.Money) -> None:
        consumed[money.amount_minor] += 1

    bus.consume(spec, "t-restart", common_pb2.Money, handle)
    total = 120

    async def publish_all() -> None:  # a relay: retry each fact with its id until acknowledged
        for i in range(total):
            while True:
                try:
                    await bus.publish_fact(f"t.restart.{i}", common_pb2.Money(amount_minor=i), msg_id=f"r-{i}")
                    break
                except TandemError:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(publish_all())
    while len(consumed) < total // 3:
        await asyncio.sleep(0.01)
    nats_server.stop()
    await asyncio.sleep(0.5)
    nats_server.start()
    await asyncio.wait_for(publisher, 30)
    for _ in range(200):
        if len(consumed) == total:
            break
        await asyncio.sleep(0.05)
    assert sorted(consumed) == list(range(total))  # nothing lost
    assert (await bus.js.stream_info("T_RESTART")).state.messages == total  # nothing stored twice
    # The de-duplication window outlives the restart (file storage): an old id is still a duplicate.
    again = await bus.publish_fact("t.restart.0", common_pb2.Money(amount_minor=0), msg_id="r-0")
    assert again.duplicate


async def test_a_consumer_whose_durable_vanished_binds_it_again(bus: Bus) -> None:
    spec = StreamSpec(name="T_VANISH", subjects=("t.vanish.>",))
    await bus.ensure_stream(spec)
    received: asyncio.Queue[int] = asyncio.Queue()

    async def handle(money: common_pb2.Money) -> None:
        await received.put(money.amount_minor)

    task = bus.consume(spec, "t-vanish", common_pb2.Money, handle)
    await bus.publish_fact("t.vanish.1", common_pb2.Money(amount_minor=1), msg_id="v-1")
    assert await asyncio.wait_for(received.get(), 5) == 1
    await bus.js.delete_consumer("T_VANISH", "t-vanish")  # what a server that lost its storage looks like
    await bus.publish_fact("t.vanish.2", common_pb2.Money(amount_minor=2), msg_id="v-2")
    # Bound again, the new durable starts from the stream's beginning: the handler is idempotent.
    seen = {await asyncio.wait_for(received.get(), 10) for _ in range(2)}
    assert 2 in seen
    assert not task.done()


@pytest.mark.parametrize(
    "outage",
    [
        TandemError("database down", code=common_pb2.ERROR_CODE_UNAVAILABLE),
        BusTimeoutError("t.dependency", 2.0),
        nats.errors.TimeoutError(),
    ],
    ids=["unavailable", "request-timeout", "nats-timeout"],
)
async def test_a_handler_whose_dependency_is_down_is_retried_in_place_without_spending_deliveries(
    bus: Bus, outage: Exception
) -> None:
    spec = StreamSpec(name="T_OUTAGE", subjects=("t.outage.>",))
    await bus.ensure_stream(spec)
    attempts = 0
    handled = asyncio.Event()

    async def during_an_outage(_: common_pb2.Money) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:  # more failures than max_deliver allows deliveries
            raise outage
        handled.set()

    bus.consume(spec, "t-outage", common_pb2.Money, during_an_outage, max_deliver=2)
    await bus.publish_fact("t.outage.1", common_pb2.Money(), msg_id="o-1")
    await asyncio.wait_for(handled.wait(), 20)
    await asyncio.sleep(0.2)  # the ack reaches the server
    info = await bus.js.consumer_info("T_OUTAGE", "t-outage")
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0  # one delivery, retried in place
    assert attempts == 4


async def test_a_stopped_consumer_hands_back_what_it_fetched(bus: Bus, nats_server: NatsServer) -> None:
    spec = StreamSpec(name="T_HANDBACK", subjects=("t.handback.>",))
    await bus.ensure_stream(spec)
    for i in range(5):
        await bus.publish_fact(f"t.handback.{i}", common_pb2.Money(amount_minor=i), msg_id=f"h-{i}")
    first = Bus(BusConfig(servers=[nats_server.url], name="first"))
    await first.connect()
    started = asyncio.Event()

    async def stuck(_: common_pb2.Money) -> None:
        started.set()
        await asyncio.sleep(60)

    first.consume(spec, "t-handback", common_pb2.Money, stuck, batch=5, ack_wait_s=30)
    await asyncio.wait_for(started.wait(), 5)
    await first.close()  # the process stops mid-batch
    received: asyncio.Queue[int] = asyncio.Queue()

    async def handle(money: common_pb2.Money) -> None:
        await received.put(money.amount_minor)

    bus.consume(spec, "t-handback", common_pb2.Money, handle, batch=5, ack_wait_s=30)
    # Well before ack_wait (30 s) would have expired: the batch was handed back.
    got = {await asyncio.wait_for(received.get(), 10) for _ in range(5)}
    assert got == set(range(5))
