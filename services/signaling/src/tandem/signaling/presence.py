"""Hosts' presence as signaling sees it: a host's socket and availability, sent to matchmaking
(the only writer of presence) as requests. A host in a call stays BUSY whatever it sends."""

from __future__ import annotations

import logging

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.v1 import client_pb2, matchmaking_pb2

logger = logging.getLogger(__name__)


class PresenceWriter:
    def __init__(self, bus: Bus, instance: str, region: str) -> None:
        self.bus = bus
        self.instance = instance
        self.region = region

    async def announce(self, host_id: str, availability: client_pb2.HostAvailability) -> None:
        update = matchmaking_pb2.PresenceUpdate(
            host_id=host_id, availability=availability, signaling_instance=self.instance, region=self.region
        )
        await self.bus.request(subjects.PRESENCE_UPDATE, update, matchmaking_pb2.HostPresence)

    async def gone(self, host_id: str) -> None:
        """The host's socket closed: offline, unless another instance has taken the host over."""
        gone = matchmaking_pb2.PresenceGone(host_id=host_id, signaling_instance=self.instance)
        try:
            await self.bus.request(subjects.PRESENCE_GONE, gone, matchmaking_pb2.HostPresence)
        except TandemError as exc:  # the socket is gone either way; its calls still need ending
            logger.warning("host gone not recorded", extra={"host_id": host_id, "error": str(exc)})
