"""Matchmaking on the bus: answers match requests, reserves hosts, releases them, learns affinity."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from tandem.common import subjects
from tandem.common.aio import TaskSet
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.common.http import HttpServer
from tandem.common.service import BaseApp
from tandem.matchmaking.affinity import AFFINITY_BUCKET, AffinityStore
from tandem.matchmaking.presence import PresenceMirror
from tandem.matchmaking.scoring import ShopperNeed, Weights, rank
from tandem.matchmaking.settings import Settings
from tandem.v1 import calls_pb2, common_pb2, matchmaking_pb2, orders_pb2

logger = logging.getLogger(__name__)

MATCHES = Counter("tandem_matchmaking_matches_total", "Match requests by outcome", ["outcome"])
MATCH_SECONDS = Histogram("tandem_matchmaking_match_seconds", "Time to answer a match request")

# Call states in which the call still holds its host.
_HOLDS_HOST = frozenset(
    {common_pb2.CALL_STATE_RINGING, common_pb2.CALL_STATE_CONNECTING, common_pb2.CALL_STATE_CONNECTED}
)


class MatchmakingApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance
        self.weights = Weights(
            category=settings.weight_category,
            returning_customer=settings.weight_returning_customer,
            idle_per_minute=settings.weight_idle_per_minute,
            idle_cap_minutes=settings.idle_cap_minutes,
        )
        self.tasks = TaskSet("matchmaking")
        self.presence: PresenceMirror | None = None
        self.affinity: AffinityStore | None = None

    async def start(self, bus: Bus, http: HttpServer) -> None:
        for stream in subjects.STREAMS:
            await bus.ensure_stream(stream)
        presence = self.presence = PresenceMirror(await bus.key_value(subjects.PRESENCE_BUCKET))
        self.affinity = AffinityStore(await bus.key_value(AFFINITY_BUCKET))
        self.tasks.spawn(presence.run(), name="presence-watch")
        http.add_check("presence", presence.synced.is_set)
        await bus.serve(subjects.MATCH_REQUEST, matchmaking_pb2.MatchRequest, self.match, queue="matchmaking")
        bus.consume(subjects.CALLS_STREAM, "matchmaking-release", calls_pb2.CallEvent, self.on_call_event)
        bus.consume(subjects.ORDERS_STREAM, "matchmaking-affinity", orders_pb2.OrderPlaced, self.on_order)

    async def stop(self) -> None:
        await self.tasks.cancel_all()

    async def match(self, request: matchmaking_pb2.MatchRequest) -> matchmaking_pb2.MatchResult:
        assert self.presence is not None
        assert self.affinity is not None
        with MATCH_SECONDS.time():
            need = ShopperNeed(
                language=request.language,
                market=request.market,
                category=request.category,
                excluded_host_ids=frozenset(request.excluded_host_ids),
                previous_host_ids=await self.affinity.previous_hosts(request.shopper_id),
            )
            by_id = {e.record.host_id: e for e in self.presence.available()}
            ranked = rank([e.profile() for e in by_id.values()], need, datetime.now(UTC), self.weights)
            for points, host in ranked[: self.settings.max_reserve_attempts]:
                entry = by_id[host.host_id]
                if await self.presence.reserve(entry, request.call_id):
                    MATCHES.labels("matched").inc()
                    logger.info("host matched", extra={"call_id": request.call_id, "host_id": host.host_id})
                    return matchmaking_pb2.MatchResult(
                        call_id=request.call_id,
                        host=matchmaking_pb2.MatchedHost(
                            host_id=host.host_id,
                            score=points,
                            returning_customer=host.host_id in need.previous_host_ids,
                            signaling_instance=entry.record.signaling_instance,
                            region=entry.record.region,
                        ),
                    )
        MATCHES.labels("no_host").inc()
        raise TandemError("no host is available for this request", code=common_pb2.ERROR_CODE_NO_HOST_AVAILABLE)

    async def on_call_event(self, event: calls_pb2.CallEvent) -> None:
        """Free the host once the call no longer holds it (declined, timed out, ended)."""
        assert self.presence is not None
        if event.host_id and event.state not in _HOLDS_HOST:
            await self.presence.release(event.host_id, event.call_id)

    async def on_order(self, order: orders_pb2.OrderPlaced) -> None:
        assert self.affinity is not None
        await self.affinity.record_order(order)


def build_app(settings: Settings, instance: str) -> MatchmakingApp:
    return MatchmakingApp(settings, instance)
