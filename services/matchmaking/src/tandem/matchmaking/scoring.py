"""How well hosts fit a batch of waiting shoppers: one NumPy score matrix per shard and batch.

Language is the shard itself and market a hard constraint; category expertise, returning-customer
affinity and the host's idle time add to a cell's score, the shopper's waiting time to its row
(`fairness`). Ineligible cells are -inf. Pure functions over arrays, tested without I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tandem.matchmaking.fairness import Relaxation, Ring, aging_bonus, ring_left_s, ring_of
from tandem.matchmaking.index import ShardIndex
from tandem.matchmaking.queue import Ticket

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Points per idle second beyond the cap: only decides between hosts that are otherwise equal.
IDLE_TIE_BREAK_PER_S = 1e-6


@dataclass(frozen=True)
class Weights:
    category: float = 40.0
    returning_customer: float = 100.0
    # Points per minute idle, capped so a long-idle host cannot outrank skill and affinity.
    idle_per_minute: float = 1.0
    idle_cap_minutes: float = 30.0

    @property
    def max_cell(self) -> float:
        """The most points a host can add to a shopper's row (the spread that aging must beat)."""
        return self.category + self.returning_customer + self.idle_per_minute * self.idle_cap_minutes + 1.0


def idle_points(idle_since_s: FloatArray, now_s: float, weights: Weights) -> FloatArray:
    """Points for each host's idle time (`idle_since_s`: Unix seconds), longest idle highest."""
    idle_s = np.maximum(0.0, now_s - idle_since_s)
    capped = np.minimum(idle_s / 60.0, weights.idle_cap_minutes) * weights.idle_per_minute
    return capped + np.minimum(idle_s, 86_400.0) * IDLE_TIE_BREAK_PER_S


def _columns(index: ShardIndex, slots: IntArray, host_ids: frozenset[str]) -> IntArray:
    """The columns of `host_ids` among `slots` (ascending, as `free_slots` gives them)."""
    if not host_ids:
        return np.zeros(0, np.intp)
    wanted = np.array([index.slot_of(host_id, default=-1) for host_id in host_ids], np.intp)
    cols = np.minimum(np.searchsorted(slots, wanted), len(slots) - 1)
    found: IntArray = cols[slots[cols] == wanted]
    return found


class Rings:
    """Which ring holds each shopper of a batch at `now_s` (`fairness.ring_of`). A ring counts only
    while it has an online host in the shopper's market whom the shopper has not excluded (a host
    that declined them or let them ring out): waiting for that host would be waiting for nobody.
    Whether a category has such hosts in a market is read from the index once per pair, and each
    shopper's ring once per batch (for its scores, then for its standing)."""

    def __init__(self, index: ShardIndex, now_s: float, relaxation: Relaxation) -> None:
        self.index = index
        self.now_s = now_s
        self.relaxation = relaxation
        self._categories: dict[tuple[str, str], bool] = {}
        self._rings: dict[str, Ring] = {}

    def ring(self, ticket: Ticket) -> Ring:
        ring = self._rings.get(ticket.call_id)
        if ring is None:
            ring = self._rings[ticket.call_id] = ring_of(
                self._waited_s(ticket),
                self.relaxation,
                previous_present=self.index.any_present(
                    ticket.previous_host_ids - ticket.excluded_host_ids, ticket.market
                ),
                category_present=self._category_present(ticket),
            )
        return ring

    def hold_s(self, ticket: Ticket) -> float:
        """How much longer the shopper is held to their ring: a shopper still waiting after a batch
        found its hosts busy."""
        return ring_left_s(self._waited_s(ticket), self.ring(ticket), self.relaxation)

    def _waited_s(self, ticket: Ticket) -> float:
        return max(0.0, self.now_s - ticket.waiting_since_s)

    def _category_present(self, ticket: Ticket) -> bool:
        if not ticket.category:
            return False
        if ticket.excluded_host_ids:
            return self.index.category_present(ticket.category, ticket.market, excluding=ticket.excluded_host_ids)
        key = (ticket.category, ticket.market)
        if key not in self._categories:
            self._categories[key] = self.index.category_present(ticket.category, ticket.market)
        return self._categories[key]


def score_batch(
    tickets: Sequence[Ticket],
    index: ShardIndex,
    slots: IntArray,
    now_s: float,
    weights: Weights,
    relaxation: Relaxation,
    *,
    rings: Rings | None = None,
) -> FloatArray:
    """Scores of `tickets` (rows) for the hosts in `slots` of `index` (columns; ascending slots); -inf
    where the host may not take the shopper (other market, excluded, outside the shopper's current ring).
    Each market's and category's hosts are taken out of the index once per batch, not per shopper.
    `rings`: the batch's `Rings`, when its standings use them too (else made here)."""
    if not len(tickets) or not len(slots):
        return np.full((len(tickets), len(slots)), -np.inf)
    idle = idle_points(index.idle_since[slots], now_s, weights)
    waited = np.array([now_s - t.waiting_since_s for t in tickets])
    markets = {market: index.market_mask(market)[slots] for market in {t.market for t in tickets}}
    categories = {category: index.category_mask(category)[slots] for category in {t.category for t in tickets}}
    rings = rings or Rings(index, now_s, relaxation)
    eligible = np.stack([markets[t.market] for t in tickets])
    skilled = np.stack([categories[t.category] for t in tickets])
    previous = np.zeros_like(eligible)
    for row, ticket in enumerate(tickets):
        previous[row, _columns(index, slots, ticket.previous_host_ids)] = True
        ring = rings.ring(ticket)
        if ring is Ring.PREVIOUS_HOST:
            eligible[row] &= previous[row]
        elif ring is Ring.CATEGORY:
            eligible[row] &= skilled[row]
        eligible[row, _columns(index, slots, ticket.excluded_host_ids)] = False
    bonus = aging_bonus(waited, relaxation)[:, None]
    points = idle + skilled * weights.category + previous * weights.returning_customer + bonus
    scores: FloatArray = np.where(eligible, points, -np.inf)
    return scores
