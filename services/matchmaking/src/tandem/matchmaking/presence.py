"""Hosts' presence: the `tandem_presence` KV bucket, mirrored in memory by a watch.

Signaling writes a host's record when the host comes, goes or changes skills; matchmaking
reserves a host for a call with a compare-and-set on the record's revision, so two matchmaking
replicas can never give one host two calls, and releases the host when the call no longer needs it.
The bucket outlives any process, so presence survives a matchmaking restart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from tandem.common.bus import decode
from tandem.common.kv import modify
from tandem.matchmaking.scoring import HostProfile
from tandem.v1 import matchmaking_pb2

logger = logging.getLogger(__name__)

HostPresence = matchmaking_pb2.HostPresence


@dataclass(frozen=True)
class PresenceEntry:
    record: matchmaking_pb2.HostPresence
    revision: int

    def profile(self) -> HostProfile:
        return HostProfile(
            host_id=self.record.host_id,
            languages=frozenset(self.record.languages),
            categories=frozenset(self.record.categories),
            markets=frozenset(self.record.markets),
            idle_since=self.record.idle_since.ToDatetime(tzinfo=UTC),
        )


class PresenceMirror:
    """An eventually consistent copy of the bucket; writes go to the bucket, never to the copy."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.entries: dict[str, PresenceEntry] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        """Follow the bucket forever, re-watching after an interruption."""
        while True:
            try:
                watcher = await self.kv.watchall()
                try:
                    async for entry in watcher:
                        if entry is None:
                            self.synced.set()
                        else:
                            self._apply(entry)
                finally:
                    await watcher.stop()  # type: ignore[no-untyped-call]
            except (nats.errors.Error, TimeoutError) as exc:
                logger.warning("presence watch interrupted", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)

    def _apply(self, entry: KeyValue.Entry) -> None:
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.entries.pop(entry.key, None)
            return
        record = decode(matchmaking_pb2.HostPresence, entry.value)
        self.entries[entry.key] = PresenceEntry(record, entry.revision or 0)
        self.synced.set()

    def available(self) -> list[PresenceEntry]:
        return [e for e in self.entries.values() if e.record.status == matchmaking_pb2.HOST_STATUS_AVAILABLE]

    async def reserve(self, entry: PresenceEntry, call_id: str) -> bool:
        """Mark the host BUSY for this call if nobody changed the record since we read it."""
        record = matchmaking_pb2.HostPresence()
        record.CopyFrom(entry.record)
        record.status = matchmaking_pb2.HOST_STATUS_BUSY
        record.call_id = call_id
        record.updated_at.FromDatetime(datetime.now(UTC))
        try:
            revision = await self.kv.update(record.host_id, record.SerializeToString(), last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        self.entries[record.host_id] = PresenceEntry(record, revision)
        return True

    async def release(self, host_id: str, call_id: str) -> bool:
        """Make a host reserved for `call_id` available again, idle from now. Idempotent."""

        def free(record: HostPresence | None) -> HostPresence | None:
            if record is None or (record.status, record.call_id) != (
                matchmaking_pb2.HOST_STATUS_BUSY,
                call_id,
            ):
                return None  # gone offline, or already released
            record.status = matchmaking_pb2.HOST_STATUS_AVAILABLE
            record.call_id = ""
            now = datetime.now(UTC)
            record.idle_since.FromDatetime(now)
            record.updated_at.FromDatetime(now)
            return record

        return await modify(self.kv, host_id, HostPresence, free) is not None
