"""Finding a host for a queued call, as the shard's matcher in matchmaking sees it: long-poll
match requests that come back with a host or the shopper's standing in the queue, and the release
of a host a call no longer holds."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tandem.common import subjects
from tandem.common.aio import TaskSet
from tandem.common.bus import Bus
from tandem.common.errors import BusTimeoutError, NoRespondersError, TandemError
from tandem.signaling.callstate import Call
from tandem.v1 import common_pb2, matchmaking_pb2

logger = logging.getLogger(__name__)
S = common_pb2

# How a ringing host's leaving counts against the host (a ringing host that hangs up declined).
MISSED = {
    S.END_REASON_DECLINED: matchmaking_pb2.HOST_OUTCOME_DECLINED,
    S.END_REASON_HANGUP: matchmaking_pb2.HOST_OUTCOME_DECLINED,
    S.END_REASON_RING_TIMEOUT: matchmaking_pb2.HOST_OUTCOME_RING_TIMEOUT,
}


@dataclass(frozen=True)
class Standing:
    """Where a shopper stands in their shard's queue (position 0: not placed yet)."""

    position: int
    estimated_wait_s: int


class Matcher:
    def __init__(self, bus: Bus, region: str, *, release_attempts: int) -> None:
        self.bus = bus
        self.region = region
        self.release_attempts = release_attempts
        self._tasks = TaskSet("releases")

    async def match(self, call: Call, wait_s: float) -> matchmaking_pb2.MatchedHost | Standing | None:
        """Ask the shard's matcher, waiting up to `wait_s`: a host reserved for the call, the
        shopper's standing, or None when nobody answered (a matcher taking the shard over).
        `BusTimeoutError` when the matcher kept the request for all of `wait_s`."""
        try:
            shard = subjects.match_shard(self.region, call.request.language)
        except ValueError:  # refused at the edge; a call adopted from an older instance may still carry one
            logger.error("no matchmaking shard for the call's language", extra={"call_id": call.call_id})
            return None
        request = matchmaking_pb2.MatchRequest(
            call_id=call.call_id, shopper_id=call.shopper_id, product_id=call.request.product_id,
            category=call.request.category, language=call.request.language, market=call.request.market,
            excluded_host_ids=call.hosts_tried, wait_ms=int(wait_s * 1000),
        )  # fmt: skip
        request.requested_at.FromNanoseconds(round(call.requested_at * 1e9))
        try:
            result = await self.bus.request(
                f"{subjects.MATCH_REQUEST}.{shard}", request, matchmaking_pb2.MatchResult, timeout_s=wait_s
            )
        except BusTimeoutError:
            raise  # the matcher held the request all along: nothing changed
        except NoRespondersError:
            return None
        except TandemError as exc:
            logger.warning("match attempt failed", extra={"call_id": call.call_id, "error": str(exc)})
            return None
        if result.HasField("queued"):
            return Standing(result.queued.position, result.queued.estimated_wait_s)
        return result.host

    def release(self, call: Call, host_id: str, outcome: matchmaking_pb2.HostOutcome.ValueType) -> None:
        """Tell matchmaking the call no longer holds the host, in the background, retrying (backing
        off from 0.2 s to 5 s) until it has heard."""

        async def release() -> None:
            message = matchmaking_pb2.HostRelease(host_id=host_id, call_id=call.call_id, outcome=outcome)
            for attempt in range(self.release_attempts):
                try:
                    await self.bus.request(subjects.MATCH_RELEASE, message, matchmaking_pb2.HostPresence)
                    return
                except TandemError as exc:
                    logger.warning("host release failed", extra={"call_id": call.call_id, "error": str(exc)})
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
            logger.error("host not released", extra={"call_id": call.call_id, "host_id": host_id})

        self._tasks.spawn(release(), name=f"release-{call.call_id}")

    async def close(self, timeout_s: float) -> None:
        """Give releases in flight a moment to land, then stop them."""
        await self._tasks.wait(timeout_s)
        await self._tasks.cancel_all()
