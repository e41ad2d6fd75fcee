"""Hosts' presence as signaling sees it: a host's socket and availability, written to the
`tandem_presence` KV bucket that matchmaking reads. A host in a call stays BUSY whatever it sends."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js.kv import KeyValue

from tandem.common.kv import modify
from tandem.v1 import client_pb2, matchmaking_pb2

HostPresence = matchmaking_pb2.HostPresence
MAX_SKILLS = 32


class PresenceWriter:
    def __init__(self, kv: KeyValue, instance: str, region: str) -> None:
        self.kv = kv
        self.instance = instance
        self.region = region

    async def announce(self, host_id: str, availability: client_pb2.HostAvailability) -> None:
        now = datetime.now(UTC)

        def apply(record: HostPresence | None) -> HostPresence:
            was = record.status if record is not None else matchmaking_pb2.HOST_STATUS_OFFLINE
            updated = HostPresence(
                host_id=host_id,
                languages=availability.languages[:MAX_SKILLS],
                categories=availability.categories[:MAX_SKILLS],
                markets=availability.markets[:MAX_SKILLS],
                time_zone=availability.time_zone,
                signaling_instance=self.instance,
                region=self.region,
            )
            if was == matchmaking_pb2.HOST_STATUS_BUSY and record is not None:
                updated.status, updated.call_id = was, record.call_id
                updated.idle_since.CopyFrom(record.idle_since)
            elif availability.available:
                updated.status = matchmaking_pb2.HOST_STATUS_AVAILABLE
                if was == matchmaking_pb2.HOST_STATUS_AVAILABLE and record is not None:
                    updated.idle_since.CopyFrom(record.idle_since)
                else:
                    updated.idle_since.FromDatetime(now)
            else:
                updated.status = matchmaking_pb2.HOST_STATUS_AWAY
            updated.updated_at.FromDatetime(now)
            return updated

        await modify(self.kv, host_id, HostPresence, apply)

    async def gone(self, host_id: str) -> None:
        """The host's socket closed: offline, unless another instance has taken the host over."""

        def apply(record: HostPresence | None) -> HostPresence | None:
            if record is None or record.signaling_instance != self.instance:
                return None
            record.status = matchmaking_pb2.HOST_STATUS_OFFLINE
            record.call_id = ""
            record.updated_at.FromDatetime(datetime.now(UTC))
            return record

        await modify(self.kv, host_id, HostPresence, apply)
