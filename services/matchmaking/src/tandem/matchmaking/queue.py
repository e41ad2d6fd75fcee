"""A shard's queue of waiting shoppers, their honest position and estimated wait.

Position: 1 + the shoppers of the same shard and market who have waited longer (they compete for
the same hosts). Estimated wait: position divided by the rate at which that market's shoppers were
matched over the last `rate_window_s`, rounded up to whole seconds, and no less than the shopper is
still held to a ring whose hosts are busy; 0 while nobody has been matched in the window (no
estimate). Counting the shoppers who leave without a host into the rate was tried: it shortened the
typical error, but told two to three times as many shoppers that they would be served in time who
then were not (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tandem.common.errors import TandemError
from tandem.v1 import common_pb2


@dataclass
class Ticket:
    call_id: str
    shopper_id: str
    market: str  # upper case
    category: str  # lower case
    previous_host_ids: frozenset[str]
    excluded_host_ids: frozenset[str]
    # Unix seconds: when the shopper started waiting (kept across polls and matcher takeovers).
    waiting_since_s: float
    # Unix seconds until which the shopper is known to be waiting: their latest request, or the end
    # of its hold while it is held.
    seen_until_s: float


@dataclass(frozen=True)
class Standing:
    position: int
    estimated_wait_s: int


class QueueFull(TandemError):
    code = common_pb2.ERROR_CODE_UNAVAILABLE

    def __init__(self, size: int) -> None:
        super().__init__(f"the queue holds {size} shoppers already; retry later")
        self.size = size


class ServiceRate:
    """Matches per second per market over a sliding window."""

    def __init__(self, window_s: float, started_s: float) -> None:
        self.window_s = window_s
        self.started_s = started_s
        self._matched: dict[str, deque[float]] = defaultdict(deque)

    def record(self, market: str, at_s: float) -> None:
        times = self._matched[market]
        times.append(at_s)
        self._trim(times, at_s)

    def rate(self, market: str, now_s: float) -> float:
        times = self._matched.get(market)
        if not times:
            return 0.0
        self._trim(times, now_s)
        span = max(1.0, min(self.window_s, now_s - self.started_s))
        return len(times) / span

    def _trim(self, times: deque[float], now_s: float) -> None:
        while times and times[0] < now_s - self.window_s:
            times.popleft()


class ShardQueue:
    def __init__(self, max_size: int, rate: ServiceRate) -> None:
        self.max_size = max_size
        self.rate = rate
        self._tickets: dict[str, Ticket] = {}

    def __len__(self) -> int:
        return len(self._tickets)

    def __iter__(self) -> Iterator[Ticket]:
        return iter(list(self._tickets.values()))

    def get(self, call_id: str) -> Ticket | None:
        return self._tickets.get(call_id)

    def upsert(self, ticket: Ticket) -> Ticket:
        """Queue a shopper, or refresh one already queued (their waiting time is kept)."""
        known = self._tickets.get(ticket.call_id)
        if known is None:
            if len(self._tickets) >= self.max_size:
                raise QueueFull(len(self._tickets))
            self._tickets[ticket.call_id] = ticket
            return ticket
        known.seen_until_s = max(known.seen_until_s, ticket.seen_until_s)
        known.waiting_since_s = min(known.waiting_since_s, ticket.waiting_since_s)
        known.excluded_host_ids = ticket.excluded_host_ids
        return known

    def remove(self, call_id: str) -> Ticket | None:
        return self._tickets.pop(call_id, None)

    def lapsed(self, now_s: float, lapse_s: float) -> list[Ticket]:
        """Remove and return the shoppers who stopped asking."""
        gone = [t for t in self._tickets.values() if now_s - t.seen_until_s > lapse_s]
        for ticket in gone:
            del self._tickets[ticket.call_id]
        return gone

    def standings(self, now_s: float, held_s: Callable[[Ticket], float] = lambda _: 0.0) -> dict[str, Standing]:
        """Every queued shopper's position and estimated wait; `held_s`: how much longer a shopper
        is held to a ring whose hosts are busy (the wait is no shorter)."""
        by_market: dict[str, list[Ticket]] = defaultdict(list)
        for ticket in self._tickets.values():
            by_market[ticket.market].append(ticket)
        result: dict[str, Standing] = {}
        for market, tickets in by_market.items():
            tickets.sort(key=lambda t: (t.waiting_since_s, t.call_id))
            rate = self.rate.rate(market, now_s)
            for position, ticket in enumerate(tickets, start=1):
                # (less a microsecond: the hold is a difference of Unix seconds, 6.0000001 is 6)
                wait = max(math.ceil(position / rate), math.ceil(held_s(ticket) - 1e-6)) if rate > 0 else 0
                result[ticket.call_id] = Standing(position, wait)
        return result
