"""Hosts and shoppers for the matchmaking unit tests."""

from __future__ import annotations

from tandem.matchmaking.index import HostCard, ShardIndex
from tandem.matchmaking.queue import Ticket

NOW = 1_800_000_000.0


def card(host_id: str, *, markets: tuple[str, ...] = ("US",), categories: tuple[str, ...] = (),
         idle_s: float = 0.0, free: bool = True, online: bool = True) -> HostCard:  # fmt: skip
    return HostCard(host_id, frozenset(markets), frozenset(categories), NOW - idle_s, free, online)


def index_of(*cards: HostCard) -> ShardIndex:
    index = ShardIndex()
    for c in cards:
        index.put(c)
    return index


def ticket(call_id: str, *, market: str = "US", category: str = "", waited_s: float = 0.0,
           previous: tuple[str, ...] = (), excluded: tuple[str, ...] = ()) -> Ticket:  # fmt: skip
    return Ticket(
        call_id=call_id, shopper_id=f"shopper-{call_id}", market=market, category=category,
        previous_host_ids=frozenset(previous), excluded_host_ids=frozenset(excluded), waiting_since_s=NOW - waited_s,
        seen_until_s=NOW,
    )  # fmt: skip
