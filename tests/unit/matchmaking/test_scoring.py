"""Scores of a batch: hard constraints, skill, affinity, idle time, rings."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.matchmaking.fairness import Relaxation
from tandem.matchmaking.index import ShardIndex
from tandem.matchmaking.queue import ServiceRate, ShardQueue, Ticket
from tandem.matchmaking.scoring import Rings, Weights, score_batch

from .builders import NOW, card, index_of, ticket

pytestmark = pytest.mark.unit

W = Weights()
R = Relaxation(aging_per_second=5.0, previous_host_s=10.0, category_s=20.0)


def scores(index: ShardIndex, tickets: list[Ticket]) -> np.ndarray:
    return score_batch(tickets, index, np.arange(len(index)), NOW, W, R)


def test_a_host_outside_the_shoppers_market_or_excluded_is_ineligible() -> None:
    index = index_of(card("us"), card("de", markets=("DE",)), card("both", markets=("US", "DE")))
    got = scores(index, [ticket("c1", excluded=("both",))])
    assert list(np.isfinite(got[0])) == [True, False, False]


def test_category_and_returning_customer_add_points_and_idle_time_breaks_ties() -> None:
    index = index_of(card("plain", idle_s=60), card("skilled", categories=("beauty",)), card("seller"),
                     card("plain-longer", idle_s=120))  # fmt: skip
    plain, skilled, seller, longer = scores(
        index, [ticket("c1", category="beauty", previous=("seller",), waited_s=30)]
    )[0]
    assert skilled - plain == pytest.approx(W.category - W.idle_per_minute, abs=0.01)
    assert seller - plain == pytest.approx(W.returning_customer - W.idle_per_minute, abs=0.01)
    assert longer > plain


def test_equal_hosts_go_to_the_longest_idle_even_beyond_the_idle_cap() -> None:
    index = index_of(card("idle-2h", idle_s=7200), card("idle-3h", idle_s=10800))
    two, three = scores(index, [ticket("c1")])[0]
    assert three > two


def test_waiting_time_raises_the_whole_row() -> None:
    got = scores(index_of(card("a")), [ticket("new"), ticket("old", waited_s=8)])
    assert got[1, 0] - got[0, 0] == pytest.approx(8 * R.aging_per_second)


def test_rings_relax_from_previous_host_to_category_to_language() -> None:
    index = index_of(card("seller"), card("skilled", categories=("beauty",)), card("any"))
    rows = [ticket(f"c{w}", category="beauty", previous=("seller",), waited_s=w) for w in (1, 12, 25)]
    assert np.isfinite(scores(index, rows)).tolist() == [[True, False, False], [False, True, False], [True, True, True]]


def test_a_ring_whose_hosts_are_offline_is_skipped() -> None:
    index = index_of(card("seller", free=False, online=False), card("any"))
    got = scores(index, [ticket("c1", category="beauty", previous=("seller",), waited_s=1)])
    assert np.isfinite(got).tolist() == [[True, True]]


def test_a_busy_previous_host_is_waited_for_during_the_first_ring() -> None:
    index = index_of(card("seller", free=False), card("any"))
    free = np.flatnonzero(index.free[: len(index)])
    got = score_batch([ticket("c1", previous=("seller",), waited_s=1)], index, free, NOW, W, R)
    assert got.shape == (1, 1)
    assert not np.isfinite(got).any()


def test_a_shopper_held_to_a_ring_is_told_no_shorter_a_wait_than_the_ring_holds_them() -> None:
    seller_busy = index_of(card("seller", free=False), card("skilled", categories=("beauty",), free=False))
    rows = {w: ticket(f"c{w}", category="beauty", previous=("seller",), waited_s=w) for w in (4, 12, 25)}
    assert [Rings(seller_busy, NOW, R).hold_s(t) for t in rows.values()] == pytest.approx([6.0, 8.0, 0.0])
    seller_offline = index_of(card("seller", free=False, online=False), card("skilled", categories=("beauty",)))
    assert Rings(seller_offline, NOW, R).hold_s(rows[4]) == pytest.approx(16.0)  # no wait for nobody
    queue = ShardQueue(10, ServiceRate(60.0, NOW - 600))
    queue.upsert(rows[4])
    for s in range(30):  # one match every 2 s: position 1 alone would be 2 s
        queue.rate.record("US", NOW - 60 + 2 * s + 1)
    assert queue.standings(NOW)["c4"].estimated_wait_s == 2
    assert queue.standings(NOW, Rings(seller_busy, NOW, R).hold_s)["c4"].estimated_wait_s == 6


def test_a_host_the_shopper_excluded_holds_no_ring() -> None:
    """A seller who declined the shopper, or the only skilled host and it rang out: the shopper is
    not held (nor told to wait) for them."""
    index = index_of(card("seller", free=False), card("skilled", categories=("beauty",)), card("any"))
    declined = ticket("c1", category="beauty", previous=("seller",), excluded=("seller",), waited_s=2)
    assert Rings(index, NOW, R).hold_s(declined) == pytest.approx(18.0)  # the category ring, not the seller's
    both = ticket("c2", category="beauty", previous=("seller",), excluded=("seller", "skilled"), waited_s=2)
    assert Rings(index, NOW, R).hold_s(both) == 0.0
    free = np.flatnonzero(index.free[: len(index)])
    assert np.isfinite(score_batch([both], index, free, NOW, W, R)).tolist() == [[False, True]]
