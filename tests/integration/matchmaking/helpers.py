"""What the matchmaking integration tests share: hosts announcing, shoppers asking like signaling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from google.protobuf.timestamp_pb2 import Timestamp

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import BusTimeoutError, NoRespondersError
from tandem.v1 import client_pb2, matchmaking_pb2

REGION = "local"


async def announce(
    bus: Bus,
    host_id: str,
    *,
    language: str = "en",
    markets: tuple[str, ...] = ("US",),
    categories: tuple[str, ...] = (),
) -> matchmaking_pb2.HostPresence:
    availability = client_pb2.HostAvailability(
        available=True, languages=[language], markets=list(markets), categories=list(categories)
    )
    update = matchmaking_pb2.PresenceUpdate(
        host_id=host_id, availability=availability, signaling_instance="sig-test", region=REGION
    )
    return await bus.request(subjects.PRESENCE_UPDATE, update, matchmaking_pb2.HostPresence, timeout_s=5)


async def release(bus: Bus, host_id: str, call_id: str, outcome: int = matchmaking_pb2.HOST_OUTCOME_COMPLETED) -> None:
    """Like signaling: a release is idempotent, so one that went to an instance killed before it
    answered is sent again."""
    message = matchmaking_pb2.HostRelease(host_id=host_id, call_id=call_id, outcome=outcome)  # type: ignore[arg-type]
    for attempt in range(3):
        try:
            await bus.request(subjects.MATCH_RELEASE, message, matchmaking_pb2.HostPresence, timeout_s=2)
            return
        except BusTimeoutError:
            if attempt == 2:
                raise


def match_request(
    call_id: str, shopper: str, language: str, market: str, wait_s: float
) -> matchmaking_pb2.MatchRequest:
    since = Timestamp()
    since.FromNanoseconds(time.time_ns())
    return matchmaking_pb2.MatchRequest(
        call_id=call_id, shopper_id=shopper, language=language, market=market, requested_at=since,
        wait_ms=int(wait_s * 1000),
    )  # fmt: skip


async def ask(bus: Bus, request: matchmaking_pb2.MatchRequest, wait_s: float) -> matchmaking_pb2.MatchResult | None:
    """One request as signaling sends it; None when nobody answered in time (no matcher yet)."""
    subject = f"{subjects.MATCH_REQUEST}.{subjects.match_shard(REGION, request.language)}"
    try:
        return await bus.request(subject, request, matchmaking_pb2.MatchResult, timeout_s=wait_s)
    except BusTimeoutError:
        return None
    except NoRespondersError:
        await asyncio.sleep(wait_s / 4)
        return None


async def answer(
    bus: Bus, request: matchmaking_pb2.MatchRequest, timeout_s: float = 10.0
) -> matchmaking_pb2.MatchResult:
    """The first answer to `request` (asked again while the shard has no matcher yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await ask(bus, request, request.wait_ms / 1000)
        if result is not None:
            return result
    raise AssertionError(f"no matcher answered {request.call_id} within {timeout_s} s")


async def wait_for_host(
    bus: Bus,
    call_id: str,
    *,
    shopper: str = "s1",
    language: str = "en",
    market: str = "US",
    wait_s: float = 1.0,
    timeout_s: float = 10.0,
    on_queued: Callable[[matchmaking_pb2.QueuePosition], None] | None = None,
) -> matchmaking_pb2.MatchedHost:
    """Ask again and again, like signaling's queued call, until a host is matched."""
    request = match_request(call_id, shopper, language, market, wait_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await ask(bus, request, wait_s)
        if result is None:
            continue
        if result.HasField("host"):
            return result.host
        if on_queued is not None:
            on_queued(result.queued)
    raise AssertionError(f"{call_id} got no host within {timeout_s} s")


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")
