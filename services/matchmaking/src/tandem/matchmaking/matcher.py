"""The active matcher of one shard: its queue, its hosts, and the batch loop.

Requests are held (long poll) until their shopper is matched, their standing changes, or their
wait is nearly over. Every `window_s`, or sooner once `flush_size` new requests arrived, the batch
loop scores every waiting shopper against every free host of the shard serving their market,
assigns them (`assignment`), reserves the chosen hosts in the presence bucket with the lease token,
and answers the held requests. A matcher whose lease may have lapsed assigns nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import Counter, Histogram

from tandem.common.bus import Reply
from tandem.common.subjects import identifier
from tandem.matchmaking.affinity import AffinityStore
from tandem.matchmaking.assignment import assign, scipy_solver
from tandem.matchmaking.fairness import Relaxation
from tandem.matchmaking.index import ShardIndex
from tandem.matchmaking.presence import PresenceBook, PresenceEntry, card_of
from tandem.matchmaking.queue import ServiceRate, ShardQueue, Standing, Ticket
from tandem.matchmaking.scoring import Rings, Weights, score_batch
from tandem.matchmaking.settings import Settings
from tandem.matchmaking.shards import FencedOut
from tandem.v1 import matchmaking_pb2

logger = logging.getLogger(__name__)

MATCHES = Counter("tandem_matchmaking_matches_total", "Shoppers matched, by shard", ["shard"])
BATCH_SECONDS = Histogram(
    "tandem_matchmaking_batch_seconds", "Time to score, assign and reserve one batch",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)  # fmt: skip
# A held request is answered when this share of the caller's wait has passed.
HOLD_SHARE = 0.8


@dataclass(frozen=True)
class MatchPolicy:
    weights: Weights
    relaxation: Relaxation
    window_s: float
    flush_size: int
    max_work: int
    max_queue: int
    lapse_s: float
    update_interval_s: float
    rate_window_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> MatchPolicy:
        return cls(
            weights=Weights(
                category=settings.weight_category, returning_customer=settings.weight_returning_customer,
                idle_per_minute=settings.weight_idle_per_minute, idle_cap_minutes=settings.idle_cap_minutes,
            ),
            relaxation=Relaxation(
                aging_per_second=settings.aging_per_second, previous_host_s=settings.previous_host_ring_s,
                category_s=settings.category_ring_s,
            ),
            window_s=settings.batch_window_ms / 1000, flush_size=settings.batch_flush_size,
            max_work=settings.solver_max_work, max_queue=settings.max_queue, lapse_s=settings.queue_lapse_s,
            update_interval_s=settings.queue_update_interval_s, rate_window_s=settings.service_rate_window_s,
        )  # fmt: skip


@dataclass(frozen=True)
class Held:
    """A request held open: where its answer goes, and until when (clock seconds)."""

    reply: Reply
    until: float
    seq: int


def queued(call_id: str, standing: Standing) -> matchmaking_pb2.MatchResult:
    position = matchmaking_pb2.QueuePosition(position=standing.position, estimated_wait_s=standing.estimated_wait_s)
    return matchmaking_pb2.MatchResult(call_id=call_id, queued=position)


class ShardMatcher:
    def __init__(
        self,
        shard: str,
        token: int,
        policy: MatchPolicy,
        book: PresenceBook,
        affinity: AffinityStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.shard = shard
        self.language = shard.rsplit(".", 1)[1]
        self.token = token
        self.policy = policy
        self.book = book
        self.affinity = affinity
        self.clock = clock
        self.index = ShardIndex()
        self.queue = ShardQueue(policy.max_queue, ServiceRate(policy.rate_window_s, clock()))
        self.entries: dict[str, PresenceEntry] = {}
        # Monotonic time until which the lease is surely ours (set by the lease loop).
        self.valid_until = 0.0
        self._held: dict[str, Held] = {}
        # (until, seq, call_id) of every hold, earliest first; entries of answered holds stay until due.
        self._holds: list[tuple[float, int, str]] = []
        self._hold_seq = itertools.count()
        # Recently matched calls: the result, when, and whether a held request carried it.
        self._assigned: dict[str, tuple[matchmaking_pb2.MatchResult, float, bool]] = {}
        self._standings: dict[str, Standing] = {}
        self._sent: dict[str, tuple[Standing, float]] = {}
        self._new = 0
        self._wake = asyncio.Event()
        # The batch loop waits for a request, not for its window (nothing queued, held or recent).
        self._idle = False

    # --- presence ---------------------------------------------------------------------------

    def on_presence(self, host_id: str, entry: PresenceEntry | None, languages: frozenset[str]) -> None:
        """A host's record changed (None: deleted); `languages`: the record's `languages_of`. A host
        come free waits for the next batch: waking the loop per host would cost a batch per release."""
        if entry is None or self.language not in languages:
            if self.entries.pop(host_id, None) is not None:
                self.index.remove(host_id)
            return
        known = self.entries.get(host_id)
        if known is not None and known.revision >= entry.revision:
            return  # not newer than what this matcher knows
        self.entries[host_id] = entry
        self.index.put(card_of(entry.record))

    # --- requests ---------------------------------------------------------------------------

    async def request(self, request: matchmaking_pb2.MatchRequest, reply: Reply) -> None:
        """A shopper's (repeated) request: answered with the host once matched, else with where
        they stand, by the batch loop or at once. Costs no task and no timer: the batch loop answers
        a held request whose hold is over."""
        call_id = identifier("call_id", request.call_id)
        now = self.clock()
        done = self._assigned.get(call_id)
        if done is not None and done[0].host.host_id not in request.excluded_host_ids:
            self._assigned[call_id] = (done[0], done[1], True)
            await reply.send(done[0])  # asked again before hearing of its match
            return
        self._assigned.pop(call_id, None)  # that host declined or rang out: a new search
        ticket = self.queue.get(call_id)
        if ticket is None:
            shopper = identifier("shopper_id", request.shopper_id)
            since = request.requested_at.ToNanoseconds() / 1e9 if request.HasField("requested_at") else now
            ticket = Ticket(
                call_id=call_id, shopper_id=shopper, market=request.market.upper(), category=request.category.lower(),
                previous_host_ids=self.affinity.previous_hosts(shopper),
                excluded_host_ids=frozenset(request.excluded_host_ids), waiting_since_s=min(since, now),
                seen_until_s=now,
            )  # fmt: skip
        ticket = self.queue.upsert(
            replace(ticket, excluded_host_ids=frozenset(request.excluded_host_ids), seen_until_s=now)
        )
        standing = self._standings.get(call_id)
        if standing is not None and self._due(call_id, standing, now):
            await reply.send(queued(call_id, standing))  # it changed while no request was held
            return
        previous = self._held.pop(call_id, None)
        if previous is not None:
            await previous.reply.send(queued(call_id, self._standings.get(call_id, Standing(0, 0))))
        hold_s = HOLD_SHARE * (request.wait_ms / 1000 if request.wait_ms else 2 * self.policy.window_s)
        held = Held(reply, now + hold_s, next(self._hold_seq))
        ticket.seen_until_s = max(ticket.seen_until_s, held.until)  # the shopper waits on while held
        self._held[call_id] = held
        heapq.heappush(self._holds, (held.until, held.seq, call_id))
        self._new += 1
        if self._new >= self.policy.flush_size or self._idle:
            self._wake.set()  # a full batch, or the first request for an idle loop

    async def close(self) -> None:
        """The shard is no longer ours: answer every held request so its caller asks the next matcher,
        and free the hosts matched to shoppers who were never told (the next matcher knows nothing
        of those matches: they would ask it, and be matched again)."""
        held, self._held = self._held, {}
        self._holds.clear()
        for call_id, one in held.items():
            await one.reply.send(queued(call_id, self._standings.get(call_id, Standing(0, 0))))
        untold = [(call_id, result) for call_id, (result, _, told) in self._assigned.items() if not told]
        self._assigned.clear()
        await self._free_untold(untold, self.clock())

    # --- batches ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._idle = not self.queue and not self._holds and not self._assigned
            if self._idle:
                await self._wake.wait()  # nothing to do until a request comes
            else:
                timeout = self.policy.window_s
                if self._holds:
                    timeout = min(timeout, max(0.0, self._holds[0][0] - self.clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            await asyncio.sleep(0)  # let requests that arrived together join the batch
            self._new = 0
            with BATCH_SECONDS.time():
                await self.batch()

    async def batch(self) -> int:
        """Assign what can be assigned now; returns the number of shoppers matched."""
        now = self.clock()
        await self._forget_lapsed(now)
        matched = 0
        rings = Rings(self.index, now, self.policy.relaxation)
        if time.monotonic() < self.valid_until and len(self.queue):
            matched = await self._assign(now, rings)
        self._standings = self.queue.standings(now, rings.hold_s)
        await self._push_standings(now)
        await self._end_holds(self.clock())
        return matched

    async def _assign(self, now: float, rings: Rings) -> int:
        tickets = list(self.queue)
        slots = self.index.free_slots({t.market for t in tickets})
        if not len(slots):
            return 0
        policy = self.policy
        scores = score_batch(tickets, self.index, slots, now, policy.weights, policy.relaxation, rings=rings)
        pairs = assign(scores, scipy_solver, policy.max_work)
        now_ns = int(now * 1e9)
        chosen = [(tickets[row], int(slots[col]), float(scores[row, col])) for row, col in pairs]
        for _, slot, _ in chosen:
            self.index.mark_taken(slot)
        # The book's mirror tells every matcher of each reservation made.
        outcomes = await self.book.reserve_all(
            [(self.entries[self.index.card(slot).host_id], ticket.call_id) for ticket, slot, _ in chosen],
            self.shard, self.token, now_ns,
        )  # fmt: skip
        matched = 0
        for (ticket, slot, points), outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, FencedOut):
                logger.warning("fenced out of shard", extra={"shard": self.shard, "token": self.token})
                self.valid_until = 0.0
            elif isinstance(outcome, Exception):
                logger.error("reservation failed", extra={"shard": self.shard, "error": repr(outcome)})
            elif outcome is not None:
                matched += 1
                await self._matched(ticket, slot, points, now)
        MATCHES.labels(self.shard).inc(matched)
        return matched

    async def _matched(self, ticket: Ticket, slot: int, points: float, now: float) -> None:
        host_id = self.index.card(slot).host_id
        record = self.entries[host_id].record
        returning = host_id in ticket.previous_host_ids
        aging = self.policy.relaxation.aging_per_second * max(0.0, now - ticket.waiting_since_s)
        result = matchmaking_pb2.MatchResult(
            call_id=ticket.call_id,
            host=matchmaking_pb2.MatchedHost(
                host_id=host_id, score=points - aging, returning_customer=returning,
                signaling_instance=record.signaling_instance, region=record.region,
            ),
        )  # fmt: skip
        self.queue.remove(ticket.call_id)
        self.queue.rate.record(ticket.market, now)
        self._sent.pop(ticket.call_id, None)
        held = self._held.pop(ticket.call_id, None)
        self._assigned[ticket.call_id] = (result, now, held is not None)
        if held is not None:
            await held.reply.send(result)
        logger.debug("host matched", extra={"call_id": ticket.call_id, "host_id": host_id, "shard": self.shard})

    async def _forget_lapsed(self, now: float) -> None:
        """Drop shoppers who stopped asking; free a host matched to a shopper who was never told
        (their request had ended) and never asked again."""
        for ticket in self.queue.lapsed(now, self.policy.lapse_s):
            self._sent.pop(ticket.call_id, None)
        # Oldest first (matched in time order), so a batch looks only at the ones that lapsed.
        untold = []
        while self._assigned:
            call_id, (result, at, told) = next(iter(self._assigned.items()))
            if now - at <= self.policy.lapse_s:
                break
            del self._assigned[call_id]
            if not told:
                untold.append((call_id, result))
        await self._free_untold(untold, now)

    async def _free_untold(self, untold: list[tuple[str, matchmaking_pb2.MatchResult]], now: float) -> None:
        """Release the hosts matched to shoppers who were never told (the host keeps its place)."""
        if not untold:
            return
        not_needed = matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED
        releases = [
            matchmaking_pb2.HostRelease(host_id=r.host.host_id, call_id=c, outcome=not_needed) for c, r in untold
        ]
        outcomes = await self.book.release_all([(r, self.entries.get(r.host_id)) for r in releases], int(now * 1e9))
        for release, outcome in zip(releases, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.warning("untold match not freed", extra={"host_id": release.host_id, "error": repr(outcome)})

    def _due(self, call_id: str, standing: Standing, now: float) -> bool:
        """Whether the shopper should hear `standing` now (and record that they did)."""
        sent = self._sent.get(call_id)
        if sent is not None and (sent[0] == standing or now - sent[1] < self.policy.update_interval_s):
            return False
        self._sent[call_id] = (standing, now)
        return True

    async def _push_standings(self, now: float) -> None:
        due = [c for c in self._held if (s := self._standings.get(c)) is not None and self._due(c, s, now)]
        for call_id in due:
            await self._held.pop(call_id).reply.send(queued(call_id, self._standings[call_id]))

    async def _end_holds(self, now: float) -> None:
        """Answer the held requests whose hold is over with where their shopper stands."""
        while self._holds and self._holds[0][0] <= now:
            _, seq, call_id = heapq.heappop(self._holds)
            held = self._held.get(call_id)
            if held is not None and held.seq == seq:
                del self._held[call_id]
                await held.reply.send(queued(call_id, self._standings.get(call_id, Standing(0, 0))))
