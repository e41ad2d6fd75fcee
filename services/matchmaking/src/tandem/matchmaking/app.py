"""Matchmaking on the bus: presence requests, releases, the shard leases and their matchers.

Any instance answers presence and release requests (queue group `matchmaking`); each shard's
match requests go to the one instance holding the shard's lease (`shards`), which runs the
shard's `ShardMatcher`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import nats.errors
import nats.js.errors
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue
from prometheus_client import Counter, Gauge

from tandem.common import subjects
from tandem.common.aio import TaskSet, cancel_and_wait
from tandem.common.bus import Bus, Reply, decode
from tandem.common.envelope import new_envelope
from tandem.common.errors import MalformedMessageError, TandemError
from tandem.common.http import HttpServer
from tandem.common.service import BaseApp
from tandem.matchmaking.affinity import AFFINITY_BUCKET, AffinityStore
from tandem.matchmaking.fairness import overtake_bound_s
from tandem.matchmaking.holds import UNREADABLE, HoldAudit, call_record
from tandem.matchmaking.matcher import MatchPolicy, ShardMatcher
from tandem.matchmaking.mirror import BucketMirror, Revision
from tandem.matchmaking.presence import (
    AWAY,
    HostPresence,
    PresenceBook,
    PresenceEntry,
    PresenceUnavailable,
    languages_of,
    paused,
)
from tandem.matchmaking.settings import Settings
from tandem.matchmaking.shards import (
    LEASES_BUCKET,
    ShardLease,
    acquired,
    lease_key,
    member_key,
    preferred_holder,
    renewed,
)
from tandem.v1 import calls_pb2, client_pb2, common_pb2, matchmaking_pb2, orders_pb2

logger = logging.getLogger(__name__)


class Stopping(TandemError):
    """This instance is stopping: a request it can no longer answer goes to another."""

    code = common_pb2.ERROR_CODE_UNAVAILABLE

    def __init__(self, instance: str) -> None:
        super().__init__(f"matchmaking instance {instance} is stopping")
        self.instance = instance


PAUSED = Counter("tandem_matchmaking_hosts_paused_total", "Hosts paused for missing calls in a row")
ABANDONED = Counter("tandem_matchmaking_abandoned_holds_total", "Hosts freed from a hold whose release was lost")
# Calls looked up at once by the hold audit.
AUDIT_CHUNK = 256
SHARDS_HELD = Gauge("tandem_matchmaking_shards_held", "Shards this instance is the active matcher of")


class MatchmakingApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance
        self.policy = MatchPolicy.from_settings(settings)
        self.tasks = TaskSet("matchmaking")
        self.bus: Bus | None = None
        self.book: PresenceBook | None = None
        self.affinity: AffinityStore | None = None
        self.presence: BucketMirror | None = None
        self.leases: BucketMirror | None = None
        self.matchers: dict[str, ShardMatcher] = {}
        self._shard_tasks: dict[str, tuple[asyncio.Task[None], Subscription]] = {}
        # Every host's record as the presence mirror shows it, decoded once per change.
        self._records: dict[str, PresenceEntry] = {}
        # Hosts per language, kept with `_records`: the shards there are, without a scan per round.
        self._speakers: collections.Counter[str] = collections.Counter()
        self._releases: list[tuple[matchmaking_pb2.HostRelease, Reply]] = []
        self._releases_queued = asyncio.Event()
        self._stopping = False
        self._release_task: asyncio.Task[None] | None = None
        self._audit = HoldAudit(settings.hold_audit_s)

    async def start(self, bus: Bus, http: HttpServer) -> None:
        self.bus = bus
        bound_s = overtake_bound_s(self.policy.weights.max_cell, self.policy.relaxation)
        logger.info(
            "matching policy", extra={"batch_window_ms": self.settings.batch_window_ms, "overtake_bound_s": bound_s}
        )
        for stream in subjects.STREAMS:
            await bus.ensure_stream(stream)
        presence_kv = await bus.key_value(subjects.PRESENCE_BUCKET)
        self.presence = BucketMirror(presence_kv, subjects.PRESENCE_BUCKET, bus.js)
        self.presence.listeners.append(self._on_presence)
        self.book = PresenceBook(
            self.presence, bus, self.settings.pause_after_misses, self.settings.max_availability_items
        )
        self.affinity = AffinityStore(await bus.key_value(AFFINITY_BUCKET), bus.js)
        lease_kv = await bus.key_value(LEASES_BUCKET)
        self.leases = BucketMirror(lease_kv, LEASES_BUCKET, bus.js)
        self.tasks.spawn(self.presence.run(), name="presence-watch")
        self.tasks.spawn(self.leases.run(), name="lease-watch")
        self.tasks.spawn(self.affinity.mirror.run(), name="affinity-watch")
        http.add_check("presence", self.presence.synced.is_set)
        # Every write is a compare-and-set, so requests are served concurrently.
        for subject, request_type, handler in (
            (subjects.PRESENCE_UPDATE, matchmaking_pb2.PresenceUpdate, self.on_update),
            (subjects.PRESENCE_GONE, matchmaking_pb2.PresenceGone, self.on_gone),
        ):
            await bus.serve(subject, request_type, handler, queue="matchmaking", concurrent=True)  # type: ignore[arg-type]
        # Releases are held and applied together by one loop, without a task each.
        await bus.serve_held(subjects.MATCH_RELEASE, matchmaking_pb2.HostRelease, self.on_release, queue="matchmaking")
        self._release_task = self.tasks.spawn(self._release_loop(), name="releases")
        bus.consume(subjects.ORDERS_STREAM, "matchmaking-affinity", orders_pb2.OrderPlaced, self.on_order)
        self.tasks.spawn(self._lease_loop(lease_kv), name="leases")
        self.tasks.spawn(self._audit_loop(), name="hold-audit")

    async def stop(self) -> None:
        """Leave the members and hand every shard over at once (the lease lapses now), then stop. The releases taken are
        applied and answered first (for as long as a write may take); new ones are refused, so
        signaling sends them to another instance at once. (Unsubscribing instead would drop those
        already on their way to this one, to time out.)"""
        self._stopping = True
        if self._release_task is not None and self.book is not None:
            self._releases_queued.set()
            await asyncio.wait({self._release_task}, timeout=self.book.timeout_s + 1)
        await self.tasks.cancel_all()
        pending, self._releases = self._releases, []
        for _, reply in pending:
            await reply.fail(Stopping(self.instance))
        await self._leave()
        for shard in list(self.matchers):
            await self._drop(shard)
            await self._hand_over(shard)

    # --- presence ---------------------------------------------------------------------------

    async def on_update(self, update: matchmaking_pb2.PresenceUpdate) -> HostPresence:
        assert self.book is not None
        return await self.book.announce(update, time.time_ns(), self._known(update.host_id))

    async def on_gone(self, gone: matchmaking_pb2.PresenceGone) -> HostPresence:
        assert self.book is not None
        await self.book.gone(gone, time.time_ns(), self._known(gone.host_id))
        return HostPresence(host_id=gone.host_id)

    async def on_release(self, release: matchmaking_pb2.HostRelease, reply: Reply) -> None:
        """A call's host to free: queued for the release loop (an invalid host id is refused at once)."""
        subjects.identifier("host_id", release.host_id)
        if self._stopping:
            raise Stopping(self.instance)
        self._releases.append((release, reply))
        self._releases_queued.set()

    async def _release_loop(self) -> None:
        """Apply the releases queued since the last pass in one pass (`PresenceBook.release_all`)
        and answer them; releases arriving meanwhile wait for the next pass. Once the instance is
        stopping, ends after the pass that empties the queue."""
        while True:
            await self._releases_queued.wait()
            self._releases_queued.clear()
            batch, self._releases = self._releases, []
            if batch:
                await self._release_pass(batch)
            if self._stopping and not self._releases:
                return

    async def _release_pass(self, batch: list[tuple[matchmaking_pb2.HostRelease, Reply]]) -> None:
        assert self.book is not None
        outcomes: list[HostPresence | Exception | None]
        try:
            outcomes = await self.book.release_all(
                [(release, self._known(release.host_id)) for release, _ in batch], time.time_ns()
            )
        except Exception:  # a defect (the bus's failures come per release): logged, answered, and on
            logger.exception("releases not applied", extra={"releases": len(batch)})
            outcomes = [TandemError("internal error", code=common_pb2.ERROR_CODE_INTERNAL)] * len(batch)
        for (release, reply), outcome in zip(batch, outcomes, strict=True):
            await self._answer_release(release, reply, outcome)

    async def _answer_release(
        self, release: matchmaking_pb2.HostRelease, reply: Reply, written: HostPresence | Exception | None
    ) -> None:
        """Answer a release with the record written; pause the host (with a notice to its app) after
        too many missed calls."""
        assert self.bus is not None
        if isinstance(written, Exception):
            error = written if isinstance(written, TandemError) else PresenceUnavailable(release.host_id, written)
            logger.warning("host not released", extra={"host_id": release.host_id, "error": str(error)})
            await reply.fail(error)
            return
        if written is None:
            await reply.send(HostPresence(host_id=release.host_id))
            return
        if written.status == AWAY and paused(written, self.settings.pause_after_misses):
            PAUSED.inc()
            logger.info("host paused", extra={"host_id": written.host_id, "missed_in_row": written.missed_in_row})
            notice = client_pb2.HostAvailability(
                available=False, languages=written.languages, categories=written.categories,
                markets=written.markets, time_zone=written.time_zone,
            )  # fmt: skip
            try:
                await self.bus.publish(
                    subjects.join(subjects.SIGNALING_DELIVER, written.host_id), new_envelope(host_availability=notice)
                )
            except (TandemError, nats.errors.Error) as exc:  # the pause stands; only its notice is lost
                logger.warning("pause notice not sent", extra={"host_id": written.host_id, "error": repr(exc)})
        await reply.send(written)

    def _known(self, host_id: str) -> PresenceEntry | None:
        """The host's record as the presence mirror shows it (None: unknown, undecodable, or not
        synced yet; the write then reads the bucket itself)."""
        assert self.presence is not None
        return self._records.get(host_id) if self.presence.synced.is_set() else None

    def _on_presence(self, host_id: str, revision: Revision | None) -> None:
        entry = None if revision is None else _entry(host_id, revision)
        previous = self._records.pop(host_id, None)
        if entry is not None:
            self._records[host_id] = entry
        languages = languages_of(entry.record) if entry is not None else frozenset()
        known = languages_of(previous.record) if previous is not None else frozenset()
        if languages != known:
            self._speakers.subtract(known)
            self._speakers.update(languages)
        for matcher in self.matchers.values():
            matcher.on_presence(host_id, entry, languages)

    async def on_order(self, order: orders_pb2.OrderPlaced) -> None:
        assert self.affinity is not None
        await self.affinity.record_order(order)

    # --- holds ------------------------------------------------------------------------------

    async def _audit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._audit.interval_s)
            try:
                await self._audit_holds()
            except (nats.errors.Error, TandemError) as exc:  # NATS away: the next round looks again
                logger.warning("holds not audited", extra={"error": repr(exc)})

    async def _audit_holds(self) -> None:
        """Release the holds whose call no longer has the host (`HoldAudit`), of the hosts whose
        first shard this instance matches (each host is audited by one instance)."""
        assert self.bus is not None
        assert self.book is not None
        try:
            calls = await self.bus.js.key_value(subjects.CALLS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            return  # no call was ever made
        now_ns = time.time_ns()
        due = [r for r in self._audit.due((e.record for e in self._records.values()), now_ns) if self._audits(r)]
        looked_up: list[tuple[HostPresence, calls_pb2.CallRecord | None]] = []
        for start in range(0, len(due), AUDIT_CHUNK):
            chunk = due[start : start + AUDIT_CHUNK]
            found = await asyncio.gather(*(call_record(calls, r.call_id) for r in chunk))
            looked_up += [(r, call) for r, call in zip(chunk, found, strict=True) if call is not UNREADABLE]
        releases = self._audit.judge(looked_up)
        if not releases:
            return
        outcomes = await self.book.release_all([(r, self._known(r.host_id)) for r in releases], time.time_ns())
        for release, outcome in zip(releases, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.warning("abandoned hold not freed", extra={"host_id": release.host_id, "error": repr(outcome)})
            elif outcome is not None:
                ABANDONED.inc()
                logger.warning(
                    "host freed from an abandoned hold", extra={"host_id": release.host_id, "call_id": release.call_id}
                )

    def _audits(self, record: HostPresence) -> bool:
        shards = sorted(subjects.match_shard(self.settings.region, language) for language in languages_of(record))
        return bool(shards) and shards[0] in self.matchers

    # --- shards -----------------------------------------------------------------------------

    def _shards(self) -> set[str]:
        spoken = (language for language, hosts in self._speakers.items() if hosts > 0)
        return {subjects.match_shard(self.settings.region, language) for language in spoken}

    def _lease(self, shard: str) -> tuple[ShardLease | None, int | None]:
        assert self.leases is not None
        known = self.leases.entries.get(lease_key(shard))
        if known is None:
            return None, None
        return decode(ShardLease, known.value), known.revision

    def _live_members(self, now_ms: int) -> list[str]:
        assert self.leases is not None
        members = [self.instance]
        for key, known in self.leases.entries.items():
            if key.startswith("member."):
                member = decode(matchmaking_pb2.MatcherMember, known.value)
                if member.expires_at_ms > now_ms and member.instance != self.instance:
                    members.append(member.instance)
        return members

    async def _lease_loop(self, kv: KeyValue) -> None:
        assert self.presence is not None
        assert self.leases is not None
        await self.presence.synced.wait()
        await self.leases.synced.wait()
        ttl_ms = int(self.settings.lease_ttl_s * 1000)
        while True:
            started = time.monotonic()
            now_ms = time.time_ns() // 1_000_000
            try:
                await self._tend_all(kv, now_ms, ttl_ms, started)
            except (nats.errors.Error, TandemError) as exc:
                # NATS away (a restart): the leases lapse on their own; try again next round.
                logger.warning("leases not tended", extra={"error": repr(exc)})
            SHARDS_HELD.set(len(self.matchers))
            await asyncio.sleep(max(0.0, self.settings.lease_renew_s - (time.monotonic() - started)))

    async def _tend_all(self, kv: KeyValue, now_ms: int, ttl_ms: int, started: float) -> None:
        member = matchmaking_pb2.MatcherMember(instance=self.instance, expires_at_ms=now_ms + ttl_ms)
        await kv.put(member_key(self.instance), member.SerializeToString())
        members = self._live_members(now_ms)
        shards = sorted(self._shards() | set(self.matchers))
        await asyncio.gather(*(self._tend_one(kv, shard, members, now_ms, ttl_ms, started) for shard in shards))

    async def _tend_one(
        self, kv: KeyValue, shard: str, members: list[str], now_ms: int, ttl_ms: int, t0: float
    ) -> None:
        try:
            await self._tend(kv, shard, members, now_ms, ttl_ms, t0)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            await self._drop(shard)  # somebody else wrote the lease first

    async def _tend(self, kv: KeyValue, shard: str, members: list[str], now_ms: int, ttl_ms: int, t0: float) -> None:
        """Renew, hand over or take one shard's lease."""
        lease, revision = self._lease(shard)
        matcher = self.matchers.get(shard)
        preferred = preferred_holder(shard, members)
        if matcher is not None:
            new = renewed(lease, self.instance, matcher.token, now_ms, ttl_ms)
            if new is None or revision is None:
                await self._drop(shard)
                return
            if preferred != self.instance:
                await self._drop(shard)
                await self._hand_over(shard)
                return
            await self._write(kv, shard, new, revision)
            matcher.valid_until = t0 + self.settings.lease_ttl_s - self.settings.lease_renew_s
            return
        if preferred != self.instance:
            return
        taken = acquired(lease, self.instance, now_ms, ttl_ms)
        if taken is None:
            return
        await self._write(kv, shard, taken, revision)
        await self._start_matcher(shard, taken.token, t0)

    async def _write(self, kv: KeyValue, shard: str, lease: ShardLease, revision: int | None) -> None:
        assert self.leases is not None
        key, value = lease_key(shard), lease.SerializeToString()
        written = await kv.create(key, value) if revision is None else await kv.update(key, value, last=revision)
        self.leases.apply(key, value, int(written))

    async def _start_matcher(self, shard: str, token: int, t0: float) -> None:
        assert self.bus is not None
        assert self.book is not None
        assert self.affinity is not None
        matcher = ShardMatcher(shard, token, self.policy, self.book, self.affinity)
        for host_id, entry in self._records.items():
            matcher.on_presence(host_id, entry, languages_of(entry.record))
        matcher.valid_until = t0 + self.settings.lease_ttl_s - self.settings.lease_renew_s
        self.matchers[shard] = matcher
        subject = f"{subjects.MATCH_REQUEST}.{shard}"
        subscription = await self.bus.serve_held(
            subject, matchmaking_pb2.MatchRequest, matcher.request, queue="matcher"
        )
        self._shard_tasks[shard] = (self.tasks.spawn(matcher.run(), name=f"matcher-{shard}"), subscription)
        logger.info("shard taken", extra={"shard": shard, "token": token, "hosts": len(matcher.index)})

    async def _drop(self, shard: str) -> None:
        matcher = self.matchers.pop(shard, None)
        running = self._shard_tasks.pop(shard, None)
        if matcher is None or running is None:
            return
        task, subscription = running
        matcher.valid_until = 0.0
        await subscription.unsubscribe()
        await cancel_and_wait(task)
        await matcher.close()
        logger.info("shard dropped", extra={"shard": shard, "token": matcher.token})

    async def _leave(self) -> None:
        """Take this instance out of the members, so the others stop preferring it for any shard now
        instead of when its member record would have expired."""
        assert self.leases is not None
        try:
            await self.leases.kv.delete(member_key(self.instance))
        except (nats.errors.Error, nats.js.errors.Error) as exc:  # the record expires on its own
            logger.warning("member record not removed", extra={"error": repr(exc)})

    async def _hand_over(self, shard: str) -> None:
        """Let the lease lapse now, so the instance preferred for the shard takes it at once."""
        assert self.leases is not None
        lease, revision = self._lease(shard)
        if lease is None or revision is None or lease.holder != self.instance:
            return
        lapsed = ShardLease(holder=lease.holder, token=lease.token, expires_at_ms=0)
        try:
            await self.leases.kv.update(lease_key(shard), lapsed.SerializeToString(), last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            return


def _entry(host_id: str, revision: Revision) -> PresenceEntry | None:
    """A mirrored presence record; None, logged, when it cannot be decoded (such a host is never
    matched, and a write for it reads the bucket and fails alone)."""
    try:
        return PresenceEntry(decode(HostPresence, revision.value), revision.revision)
    except MalformedMessageError as exc:
        logger.error("undecodable presence record", extra={"host_id": host_id, "error": str(exc)})
        return None


def build_app(settings: Settings, instance: str) -> MatchmakingApp:
    return MatchmakingApp(settings, instance)
