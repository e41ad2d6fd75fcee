"""Aging: under sustained overload nobody is overtaken by a shopper who came much later, so every
shopper's wait is bounded by the queue ahead of them, whatever the hosts' fit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.matchmaking.assignment import assign, scipy_solver
from tandem.matchmaking.fairness import Relaxation, overtake_bound_s
from tandem.matchmaking.index import ShardIndex
from tandem.matchmaking.scoring import Weights, score_batch

from .builders import NOW, card, ticket

pytestmark = pytest.mark.unit

W = Weights()
R = Relaxation(aging_per_second=5.0, previous_host_s=10.0, category_s=20.0)
BOUND_S = overtake_bound_s(W.max_cell, R)
CATEGORIES = ("beauty", "fashion", "", "")
MARKETS = ("US", "DE")


@st.composite
def overload(draw: st.DrawFn) -> tuple[int, list[tuple[int, str, str, int]], list[tuple[str, str]]]:
    """Rounds of one second; per round a few hosts come free and more shoppers arrive than that."""
    rounds = draw(st.integers(20, 60))
    arrivals = [
        (r, draw(st.sampled_from(MARKETS)), draw(st.sampled_from(CATEGORIES)), draw(st.integers(0, 9)))
        for r in range(rounds) for _ in range(draw(st.integers(2, 4)))
    ]  # fmt: skip
    hosts = [(draw(st.sampled_from(MARKETS)), draw(st.sampled_from(CATEGORIES))) for _ in range(10)]
    return rounds, arrivals, hosts


@settings(max_examples=40, deadline=None)
@given(overload(), st.sampled_from([10**9, 0]))
def test_under_sustained_overload_no_shopper_is_overtaken_beyond_the_aging_bound(
    case: tuple[int, list[tuple[int, str, str, int]], list[tuple[str, str]]], max_work: int
) -> None:
    rounds, arrivals, hosts = case
    index = ShardIndex()
    for h, (market, category) in enumerate(hosts):
        index.put(card(f"h{h}", markets=(market, "US") if h % 3 == 0 else (market,),
                       categories=(category,) if category else (), free=False))  # fmt: skip
    waiting: dict[str, tuple[float, str]] = {}
    tickets = {}
    served_after: list[float] = []
    for now_round in range(rounds + len(arrivals)):
        if now_round >= rounds and not any(market == "US" for _, market in waiting.values()):
            break
        now = NOW + now_round
        for i, (r, market, category, seller) in enumerate(arrivals):
            if r == now_round:
                call = f"c{i}"
                tickets[call] = ticket(call, market=market, category=category, previous=(f"h{seller}",))
                tickets[call].waiting_since_s = now
                waiting[call] = (now, market)
        # Two hosts come free each round (1.0 shoppers per round more than the hosts can take).
        for h in (2 * now_round % 10, (2 * now_round + 1) % 10):
            index.put(card(f"h{h}", markets=tuple(index.card(h).markets), categories=tuple(index.card(h).categories)))
        queue = [tickets[c] for c in waiting]
        slots = np.flatnonzero(index.free[: len(index)])
        scores = score_batch(queue, index, slots, now, W, R)
        pairs = assign(scores, scipy_solver, max_work)
        assigned_rows = {r for r, _ in pairs}
        for row, col in pairs:
            for other in range(len(queue)):
                if other not in assigned_rows and np.isfinite(scores[other, col]):
                    older_by = queue[row].waiting_since_s - queue[other].waiting_since_s
                    assert older_by <= BOUND_S + 1e-6, "a shopper was overtaken by a much newer one"
        for row, col in pairs:
            index.mark_taken(int(slots[col]))
            served_after.append(now - queue[row].waiting_since_s)
            del waiting[queue[row].call_id]
    # Waits grow with the backlog, never without bound for some unlucky shopper: every shopper some
    # host serves was served once the arrivals stopped, within the time the backlog takes at the
    # slowest rate hosts for the US come free (4 of the 10 hosts, each one round in five).
    assert not [c for c, (_, market) in waiting.items() if market == "US"]
    assert max(served_after) <= len(arrivals) / 0.8 + BOUND_S + R.category_s
