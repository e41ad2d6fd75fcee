"""Queue position and estimated wait."""

from __future__ import annotations

import pytest

from tandem.matchmaking.index import ShardIndex
from tandem.matchmaking.queue import QueueFull, ServiceRate, ShardQueue

from .builders import NOW, card, ticket

pytestmark = pytest.mark.unit


def test_positions_count_the_longer_waiting_shoppers_of_the_same_market_and_count_down() -> None:
    queue = ShardQueue(100, ServiceRate(60.0, NOW - 60))
    for n in range(4):
        queue.upsert(ticket(f"us{n}", waited_s=10 - n))
    queue.upsert(ticket("de0", market="DE", waited_s=1))
    assert [queue.standings(NOW)[f"us{n}"].position for n in range(4)] == [1, 2, 3, 4]
    assert queue.standings(NOW)["de0"].position == 1
    queue.remove("us0")
    assert [queue.standings(NOW)[f"us{n}"].position for n in range(1, 4)] == [1, 2, 3]


def test_the_estimated_wait_is_the_position_over_the_markets_recent_service_rate() -> None:
    rate = ServiceRate(60.0, NOW - 600)
    queue = ShardQueue(100, rate)
    for n in range(3):
        queue.upsert(ticket(f"c{n}", waited_s=3 - n))
    assert queue.standings(NOW)["c2"].estimated_wait_s == 0  # nothing matched yet: no estimate
    for s in range(30):  # one match every 2 s over the last minute
        rate.record("US", NOW - 60 + 2 * s + 1)
    assert [queue.standings(NOW)[f"c{n}"].estimated_wait_s for n in range(3)] == [2, 4, 6]


def test_the_service_rate_keeps_only_its_window_of_matches_when_nobody_asks_for_it() -> None:
    rate = ServiceRate(60.0, NOW)
    for n in range(10_000):  # ten matches a second, every shopper matched at once: no standings
        rate.record("US", NOW + n / 10)
    assert len(rate._matched["US"]) <= 601  # (private) what the window holds, not every match
    assert rate.rate("US", NOW + 1000) == pytest.approx(10.0)


def test_a_repeated_request_keeps_the_waiting_time_and_a_silent_shopper_lapses() -> None:
    queue = ShardQueue(2, ServiceRate(60.0, NOW))
    queue.upsert(ticket("c1", waited_s=5))
    again = ticket("c1")
    again.seen_until_s = NOW + 2
    assert queue.upsert(again).waiting_since_s == NOW - 5
    queue.upsert(ticket("c2"))
    with pytest.raises(QueueFull):
        queue.upsert(ticket("c3"))
    assert [t.call_id for t in queue.lapsed(NOW + 4, 3.0)] == ["c2"]


def test_the_index_grows_and_reuses_slots_and_finds_free_hosts_by_market() -> None:
    index = ShardIndex()
    for n in range(200):
        index.put(card(f"h{n}", markets=("US",) if n % 2 else ("DE",), free=n % 4 != 1))
    assert len(index) == 200
    us = index.free_slots({"US"})
    assert {index.card(int(s)).host_id for s in us} == {f"h{n}" for n in range(200) if n % 4 == 3}
    index.remove("h3")
    index.put(card("new", markets=("US",)))
    assert "new" in {index.card(int(s)).host_id for s in index.free_slots({"US"})}
    assert "h3" not in {index.card(int(s)).host_id for s in index.free_slots({"US", "DE"})}
