"""Matchmaking over real NATS: presence in KV, reservation, release on call facts, affinity, restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.common.http import HttpServer
from tandem.matchmaking.app import MatchmakingApp
from tandem.matchmaking.settings import Settings
from tandem.v1 import calls_pb2, common_pb2, matchmaking_pb2, orders_pb2

pytestmark = pytest.mark.integration


async def start_matchmaking(bus: Bus) -> MatchmakingApp:
    app = MatchmakingApp(Settings(), "mm-test")
    http = HttpServer("127.0.0.1", 0)
    await app.start(bus, http)
    await asyncio.wait_for(_synced(app), 5)
    return app


async def _synced(app: MatchmakingApp) -> None:
    assert app.presence is not None
    await app.presence.synced.wait()


async def announce(bus: Bus, host_id: str, language: str = "en") -> None:
    kv = await bus.key_value(subjects.PRESENCE_BUCKET)
    record = matchmaking_pb2.HostPresence(
        host_id=host_id, status=matchmaking_pb2.HOST_STATUS_AVAILABLE, languages=[language], markets=["US"]
    )
    record.idle_since.FromDatetime(datetime.now(UTC))
    await kv.put(host_id, record.SerializeToString())


async def match(bus: Bus, call_id: str, shopper: str = "s1", language: str = "en") -> matchmaking_pb2.MatchResult:
    request = matchmaking_pb2.MatchRequest(call_id=call_id, shopper_id=shopper, language=language, market="US")
    return await bus.request(subjects.MATCH_REQUEST, request, matchmaking_pb2.MatchResult)


async def eventually(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_host_is_reserved_for_one_call_and_released_when_it_ends(bus: Bus) -> None:
    app = await start_matchmaking(bus)
    await announce(bus, "h1")
    await eventually(lambda: _has(app, "h1"))

    first = await match(bus, "c1")
    assert first.host.host_id == "h1"
    with pytest.raises(TandemError) as busy:
        await match(bus, "c2")
    assert busy.value.code == common_pb2.ERROR_CODE_NO_HOST_AVAILABLE

    ended = calls_pb2.CallEvent(event_id="c1:9", call_id="c1", state=common_pb2.CALL_STATE_ENDED, host_id="h1")
    await bus.publish_fact(subjects.join(subjects.CALL_EVENTS, "c1"), ended, msg_id=ended.event_id)

    async def matched_again() -> bool:
        try:
            return (await match(bus, "c3")).host.host_id == "h1"
        except TandemError:
            return False

    await eventually(matched_again)
    await app.stop()


async def _has(app: MatchmakingApp, host_id: str) -> bool:
    assert app.presence is not None
    return host_id in app.presence.entries


async def test_presence_survives_a_matchmaking_restart(bus: Bus) -> None:
    first = await start_matchmaking(bus)
    await announce(bus, "h-restart", language="ja")
    await eventually(lambda: _has(first, "h-restart"))
    await first.stop()

    restarted = await start_matchmaking(bus)
    await eventually(lambda: _has(restarted, "h-restart"))
    assert (await match(bus, "c-after", language="ja")).host.host_id == "h-restart"
    await restarted.stop()


async def test_the_host_a_shopper_bought_from_is_preferred(bus: Bus) -> None:
    app = await start_matchmaking(bus)
    await announce(bus, "stranger", language="de")
    await asyncio.sleep(0.01)
    await announce(bus, "seller", language="de")  # less idle than the stranger
    order = orders_pb2.OrderPlaced(order_id="o1", shopper_id="loyal", host_id="seller")
    await bus.publish_fact(subjects.join(subjects.ORDER_EVENTS, "o1"), order, msg_id="o1")
    assert app.affinity is not None
    await eventually(lambda: _knows(app, "loyal"))

    result = await match(bus, "c-loyal", shopper="loyal", language="de")
    assert (result.host.host_id, result.host.returning_customer) == ("seller", True)
    assert (await match(bus, "c-new", shopper="newcomer", language="de")).host.host_id == "stranger"
    await app.stop()


async def _knows(app: MatchmakingApp, shopper: str) -> bool:
    assert app.affinity is not None
    return bool(await app.affinity.previous_hosts(shopper))
