"""Hosts' presence, owned by matchmaking: the `tandem_presence` KV bucket, its only writer.

Signaling asks (`PresenceUpdate`, `PresenceGone`); calls release their host with `HostRelease`;
the shard matchers reserve hosts. Every write is a compare-and-set on the record's revision, so
concurrent instances never give one host two calls, and the bucket outlives any process.
The transitions are pure functions below; `PresenceBook` applies them to the bucket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors

from tandem.common.bus import Bus
from tandem.common.errors import InvalidArgumentError, TandemError
from tandem.common.kv import Written, modify, update_all
from tandem.common.subjects import identifier
from tandem.matchmaking.index import HostCard
from tandem.matchmaking.mirror import BucketMirror
from tandem.matchmaking.shards import FencedOut, check_fence
from tandem.v1 import common_pb2, matchmaking_pb2

logger = logging.getLogger(__name__)

HostPresence = matchmaking_pb2.HostPresence
AVAILABLE, BUSY, AWAY, OFFLINE = (
    matchmaking_pb2.HOST_STATUS_AVAILABLE, matchmaking_pb2.HOST_STATUS_BUSY, matchmaking_pb2.HOST_STATUS_AWAY,
    matchmaking_pb2.HOST_STATUS_OFFLINE,
)  # fmt: skip
_MISSES = frozenset({matchmaking_pb2.HOST_OUTCOME_DECLINED, matchmaking_pb2.HOST_OUTCOME_RING_TIMEOUT})


class PresenceUnavailable(TandemError):
    """The presence bucket could not be written (NATS away or slow): worth asking again."""

    code = common_pb2.ERROR_CODE_UNAVAILABLE

    def __init__(self, host_id: str, cause: Exception) -> None:
        super().__init__(f"presence of {host_id} not written: {cause!r}"[:200])
        self.host_id = host_id
        self.cause = cause


def languages_of(record: HostPresence) -> frozenset[str]:
    """The primary languages a host speaks (the shards it belongs to, per region)."""
    return _primaries(tuple(record.languages))


# Hosts list a handful of distinct languages, markets and categories between them, and every write
# of a record (two per call) reads them again: each distinct list is normalised once.
@functools.lru_cache(maxsize=4096)
def _primaries(tags: tuple[str, ...]) -> frozenset[str]:
    primaries = set()
    for tag in tags:
        primary = tag.split("-", 1)[0].lower()
        if 2 <= len(primary) <= 8 and primary.isascii() and primary.isalpha():
            primaries.add(primary)
    return frozenset(primaries)


@functools.lru_cache(maxsize=4096)
def _upper(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(value.upper() for value in values)


@functools.lru_cache(maxsize=4096)
def _lower(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(value.lower() for value in values)


def card_of(record: HostPresence) -> HostCard:
    return HostCard(
        host_id=record.host_id,
        markets=_upper(tuple(record.markets)),
        categories=_lower(tuple(record.categories)),
        idle_since_s=record.idle_since.ToNanoseconds() / 1e9,
        free=record.status == AVAILABLE,
        online=record.status == AVAILABLE or (record.status == BUSY and (record.after_call or AVAILABLE) == AVAILABLE),
    )


def announced(record: HostPresence | None, update: matchmaking_pb2.PresenceUpdate, now_ns: int) -> HostPresence:
    """A host said how available it is. A host in a call stays BUSY whatever it sends, and becomes
    what it sent when the call is released; a host that becomes available starts a new idle period
    (and its count of missed calls starts again)."""
    availability = update.availability
    was = record.status if record is not None else OFFLINE
    new = HostPresence(
        host_id=update.host_id, languages=availability.languages, categories=availability.categories,
        markets=availability.markets,
        time_zone=availability.time_zone, signaling_instance=update.signaling_instance, region=update.region,
    )  # fmt: skip
    if record is not None:
        new.fences.update(record.fences)
    if was == BUSY and record is not None:
        new.status, new.call_id = BUSY, record.call_id
        new.idle_since.CopyFrom(record.idle_since)
        new.missed_in_row = record.missed_in_row
        new.after_call = AVAILABLE if availability.available else AWAY
    elif availability.available:
        new.status = AVAILABLE
        if was == AVAILABLE and record is not None:
            new.idle_since.CopyFrom(record.idle_since)
            new.missed_in_row = record.missed_in_row
        else:
            new.idle_since.FromNanoseconds(now_ns)
    else:
        new.status = AWAY
    new.updated_at.FromNanoseconds(now_ns)
    return new


def went(record: HostPresence | None, gone: matchmaking_pb2.PresenceGone, now_ns: int) -> HostPresence | None:
    """The host's socket closed: offline, unless another signaling instance holds the host now. A
    host in a call keeps its hold (the call may resume within signaling's grace, and ends with its
    release either way) and goes offline when it is released."""
    if record is None or record.signaling_instance != gone.signaling_instance:
        return None
    new = HostPresence()
    new.CopyFrom(record)
    if record.status == BUSY:
        new.after_call = OFFLINE
    else:
        new.status = OFFLINE
    new.updated_at.FromNanoseconds(now_ns)
    return new


def reserved(record: HostPresence, call_id: str, shard: str, token: int, now_ns: int) -> HostPresence | None:
    """The host reserved for `call_id` by the matcher of `shard` holding lease `token`; None when
    the host is not free. Raises `FencedOut` when a newer holder of the shard's lease used it."""
    check_fence(record, shard, token)
    if record.status != AVAILABLE:
        return None
    new = HostPresence()
    new.CopyFrom(record)
    new.status, new.call_id = BUSY, call_id
    new.fences[shard] = token
    new.updated_at.FromNanoseconds(now_ns)
    return new


def released(
    record: HostPresence | None, release: matchmaking_pb2.HostRelease, now_ns: int, pause_after_misses: int
) -> HostPresence | None:
    """The host free again (idle from now; a host reserved but never called keeps its place), AWAY
    when it has now missed `pause_after_misses` calls in a row or asked to go away during the call,
    OFFLINE when its socket closed during the call; None when the host is not held by
    `release.call_id` (already released, gone)."""
    if record is None or record.status != BUSY or record.call_id != release.call_id:
        return None
    new = HostPresence()
    new.CopyFrom(record)
    new.call_id = ""
    new.ClearField("after_call")
    if release.outcome in _MISSES:
        new.missed_in_row += 1
    elif release.outcome == matchmaking_pb2.HOST_OUTCOME_COMPLETED:
        new.missed_in_row = 0
    if record.after_call == OFFLINE:
        new.status = OFFLINE
    elif paused(new, pause_after_misses):
        new.status = AWAY
    else:
        new.status = record.after_call or AVAILABLE
    if release.outcome != matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED:
        new.idle_since.FromNanoseconds(now_ns)
    new.updated_at.FromNanoseconds(now_ns)
    return new


def paused(record: HostPresence, pause_after_misses: int) -> bool:
    """Whether the host has missed so many calls in a row that it is held AWAY until it comes back."""
    return record.missed_in_row >= pause_after_misses


@dataclass(frozen=True)
class PresenceEntry:
    record: HostPresence
    revision: int


def _pair(entry: PresenceEntry | None) -> tuple[HostPresence, int] | None:
    return None if entry is None else (entry.record, entry.revision)


class PresenceBook:
    """The writes to the presence bucket, each given at once to the bucket's `mirror` in this
    process (its listeners hear of it now; the watch's echo of it is then skipped)."""

    def __init__(
        self, mirror: BucketMirror, bus: Bus, pause_after_misses: int, max_items: int, *, timeout_s: float = 5.0
    ) -> None:
        self.mirror = mirror
        self.kv = mirror.kv
        self.bus = bus
        self.pause_after_misses = pause_after_misses
        # Languages, categories or markets in one host's availability; more are refused.
        self.max_items = max_items
        self.timeout_s = timeout_s

    def _record(self, key: str, written: Written[HostPresence] | None) -> HostPresence | None:
        if written is None:
            return None
        self.mirror.apply(key, written.value, written.revision)
        return written.record

    async def announce(
        self, update: matchmaking_pb2.PresenceUpdate, now_ns: int, known: PresenceEntry | None = None
    ) -> HostPresence:
        """Apply a host's update. `known`, here and in `gone`: the record as the bucket's mirror shows
        it, tried first instead of reading the bucket (the write is a compare-and-set either way)."""
        identifier("host_id", update.host_id)
        availability = update.availability
        for name, items in (
            ("languages", availability.languages), ("categories", availability.categories),
            ("markets", availability.markets),
        ):  # fmt: skip
            if len(items) > self.max_items:
                raise InvalidArgumentError(name, f"has {len(items)} entries; the limit is {self.max_items}")
        written = await modify(
            self.kv, update.host_id, HostPresence, lambda r: announced(r, update, now_ns), known=_pair(known)
        )
        record = self._record(update.host_id, written)
        assert record is not None
        return record

    async def gone(self, gone: matchmaking_pb2.PresenceGone, now_ns: int, known: PresenceEntry | None = None) -> None:
        identifier("host_id", gone.host_id)
        written = await modify(self.kv, gone.host_id, HostPresence, lambda r: went(r, gone, now_ns), known=_pair(known))
        self._record(gone.host_id, written)

    async def release(self, release: matchmaking_pb2.HostRelease, now_ns: int) -> HostPresence | None:
        """Apply a release to the record read from the bucket; returns the record written (None when
        there was nothing to release)."""
        identifier("host_id", release.host_id)
        written = await modify(
            self.kv, release.host_id, HostPresence, lambda r: released(r, release, now_ns, self.pause_after_misses)
        )
        return self._record(release.host_id, written)

    async def release_all(
        self, releases: Sequence[tuple[matchmaking_pb2.HostRelease, PresenceEntry | None]], now_ns: int
    ) -> list[HostPresence | Exception | None]:
        """Apply several releases at once, each to its host's record as its entry shows it, their writes
        sent together (`update_all`). A release whose entry is missing or changed since, or does not
        hold the host (perhaps only the entry is stale), or whose host an earlier release of the batch
        writes, is then applied to the record read from the bucket (`release`): one host's in order,
        different hosts' at once. Per release, in order: the record written, None when there was
        nothing to release, or the error."""
        outcomes: list[HostPresence | Exception | None] = [None] * len(releases)
        records: list[tuple[HostPresence, int]] = []
        sent: list[int] = []
        again: list[int] = []
        hosts: set[str] = set()
        for n, (release, known) in enumerate(releases):
            record = None
            if known is not None and release.host_id not in hosts:
                record = released(known.record, release, now_ns, self.pause_after_misses)
            if known is None or record is None:
                again.append(n)
                continue
            hosts.add(release.host_id)
            records.append((record, known.revision))
            sent.append(n)
        for n, (record, _), result in zip(sent, records, await self._write_all(records), strict=True):
            if result is None:
                again.append(n)  # another writer won: read the bucket
            else:
                outcomes[n] = record if isinstance(result, int) else result
        by_host: dict[str, list[int]] = {}
        for n in sorted(again):
            by_host.setdefault(releases[n][0].host_id, []).append(n)

        async def in_order(indexes: list[int]) -> None:
            for n in indexes:
                try:
                    outcomes[n] = await self.release(releases[n][0], now_ns)
                except (TandemError, nats.errors.Error, TimeoutError, OSError) as exc:  # answered one by one
                    outcomes[n] = exc

        await asyncio.gather(*(in_order(indexes) for indexes in by_host.values()))
        return outcomes

    async def reserve_all(
        self, wanted: Sequence[tuple[PresenceEntry, str]], shard: str, token: int, now_ns: int
    ) -> list[int | Exception | None]:
        """Reserve each host as its entry shows it for its call, all at once. Per host, in order: the
        new revision; None when the record changed since (another writer won) or the host is not
        free; `FencedOut` when a newer holder of the shard's lease used the host; or the error."""
        outcomes: list[int | Exception | None] = [None] * len(wanted)
        records: list[tuple[HostPresence, int]] = []
        sent: list[int] = []
        for n, (entry, call_id) in enumerate(wanted):
            try:
                record = reserved(entry.record, call_id, shard, token, now_ns)
            except FencedOut as exc:
                outcomes[n] = exc
                continue
            if record is not None:
                records.append((record, entry.revision))
                sent.append(n)
        for n, result in zip(sent, await self._write_all(records), strict=True):
            outcomes[n] = result
        return outcomes

    async def _write_all(self, records: Sequence[tuple[HostPresence, int]]) -> list[int | Exception | None]:
        """Compare-and-set each record over the revision given, all at once; each write that landed
        is given to the mirror. Per record: the new revision, None (another writer won) or the error."""
        writes = [(record.host_id, record.SerializeToString(), revision) for record, revision in records]
        results = await update_all(self.bus, self.mirror.bucket, writes, timeout_s=self.timeout_s)
        for (host_id, value, _), result in zip(writes, results, strict=True):
            if isinstance(result, int):
                self.mirror.apply(host_id, value, result)
        return results
