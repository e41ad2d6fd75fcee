"""Finding a host for a queued call: one question to matchmaking at a time, and the release of a
host's hold when a call no longer needs the host it was given."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.signaling.callstate import Call
from tandem.v1 import calls_pb2, common_pb2, matchmaking_pb2

logger = logging.getLogger(__name__)
S = common_pb2


class Matcher:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def match(self, call: Call) -> matchmaking_pb2.MatchedHost | None:
        """A host reserved for the call, or None when none is free now (try again later)."""
        request = matchmaking_pb2.MatchRequest(
            call_id=call.call_id, shopper_id=call.shopper_id, product_id=call.request.product_id,
            category=call.request.category, language=call.request.language, market=call.request.market,
            excluded_host_ids=call.hosts_tried,
        )  # fmt: skip
        try:
            result = await self.bus.request(subjects.MATCH_REQUEST, request, matchmaking_pb2.MatchResult)
        except TandemError as exc:
            if exc.code != S.ERROR_CODE_NO_HOST_AVAILABLE:
                logger.warning("match attempt failed", extra={"call_id": call.call_id, "error": str(exc)})
            return None
        return result.host

    async def publish(self, call: Call, host_id: str | None = None) -> None:
        """Publish the call's state as a fact (JetStream, de-duplicated by call and sequence);
        matchmaking frees or holds hosts from these facts."""
        call.event_seq += 1
        request = call.request
        event = calls_pb2.CallEvent(
            event_id=f"{call.call_id}:{call.event_seq}", call_id=call.call_id, state=call.state,
            reason=call.reason, shopper_id=call.shopper_id, host_id=call.host_id if host_id is None else host_id,
            product_id=request.product_id, category=request.category, language=request.language,
            market=request.market, worker_id=call.worker_id,
        )  # fmt: skip
        event.at.FromDatetime(datetime.now(UTC))
        try:
            await self.bus.publish_fact(subjects.join(subjects.CALL_EVENTS, call.call_id), event, msg_id=event.event_id)
        except TandemError as exc:
            logger.error("call event not published", extra={"call_id": call.call_id, "error": str(exc)})

    async def release(self, call: Call, host_id: str) -> None:
        """The call lets go of a host it held (it was declined, timed out, or cancelled meanwhile)."""
        await self.publish(call, host_id=host_id)
