"""The hosts of one shard (region x language) in memory, indexed by market and category.

Each host has a slot in parallel NumPy arrays (free, online, idle since) and a bit in one boolean
mask per market and per category, so the candidates for a shopper are a few vector operations
over the shard, never a scan of every host in Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
_INITIAL_SLOTS = 64


@dataclass(frozen=True)
class HostCard:
    """What matching needs to know of a host."""

    host_id: str
    markets: frozenset[str]  # upper case
    categories: frozenset[str]  # lower case
    # Unix seconds.
    idle_since_s: float
    free: bool
    # Free, or in a call after which it will be free: a returning shopper may wait for such a host.
    online: bool


class ShardIndex:
    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self._cards: list[HostCard | None] = []
        self._released: list[int] = []
        self.free = np.zeros(_INITIAL_SLOTS, bool)
        self.online = np.zeros(_INITIAL_SLOTS, bool)
        self.idle_since = np.zeros(_INITIAL_SLOTS)
        self._markets: dict[str, BoolArray] = {}
        self._categories: dict[str, BoolArray] = {}
        self._none = np.zeros(_INITIAL_SLOTS, bool)

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def capacity(self) -> int:
        return len(self.free)

    def _grow(self) -> None:
        size = self.capacity * 2

        def grown(array: BoolArray) -> BoolArray:
            bigger = np.zeros(size, bool)
            bigger[: len(array)] = array
            return bigger

        idle_since = np.zeros(size)
        idle_since[: self.capacity] = self.idle_since
        self.free, self.online, self.idle_since, self._none = (
            grown(self.free), grown(self.online), idle_since, np.zeros(size, bool),
        )  # fmt: skip
        self._markets = {k: grown(v) for k, v in self._markets.items()}
        self._categories = {k: grown(v) for k, v in self._categories.items()}

    def _mask(self, masks: dict[str, BoolArray], key: str) -> BoolArray:
        mask = masks.get(key)
        if mask is None:
            mask = masks[key] = np.zeros(self.capacity, bool)
        return mask

    def put(self, card: HostCard) -> None:
        """Add or update a host."""
        slot = self._slots.get(card.host_id)
        listed = False  # already in the masks of the card's markets and categories
        if slot is None:
            if not self._released:
                if len(self._cards) == self.capacity:
                    self._grow()
                self._cards.append(None)
                self._released.append(len(self._cards) - 1)
            slot = self._slots[card.host_id] = self._released.pop()
        else:
            old = self.card(slot)
            listed = old.markets == card.markets and old.categories == card.categories  # most writes
            if not listed:
                self._clear_masks(slot)
        self._cards[slot] = card
        self.free[slot], self.online[slot], self.idle_since[slot] = card.free, card.online, card.idle_since_s
        if listed:
            return
        for market in card.markets:
            self._mask(self._markets, market)[slot] = True
        for category in card.categories:
            self._mask(self._categories, category)[slot] = True

    def _clear_masks(self, slot: int) -> None:
        card = self._cards[slot]
        assert card is not None
        for market in card.markets:
            self._markets[market][slot] = False
        for category in card.categories:
            self._categories[category][slot] = False

    def remove(self, host_id: str) -> None:
        slot = self._slots.pop(host_id, None)
        if slot is None:
            return
        self._clear_masks(slot)
        self._cards[slot] = None
        self.free[slot] = self.online[slot] = False
        self._released.append(slot)

    def mark_taken(self, slot: int) -> None:
        """A reservation was made: the host is not free until presence says otherwise."""
        self.free[slot] = False

    def card(self, slot: int) -> HostCard:
        card = self._cards[slot]
        assert card is not None
        return card

    def slot_of(self, host_id: str, *, default: int) -> int:
        return self._slots.get(host_id, default)

    def market_mask(self, market: str) -> BoolArray:
        return self._markets.get(market.upper(), self._none)

    def category_mask(self, category: str) -> BoolArray:
        return self._categories.get(category.lower(), self._none)

    def free_slots(self, markets: Iterable[str]) -> npt.NDArray[np.intp]:
        """Slots of free hosts selling to any of `markets`."""
        wanted = np.zeros(self.capacity, bool)
        for market in set(markets):
            wanted |= self.market_mask(market)
        return np.flatnonzero(wanted & self.free)

    def category_present(self, category: str, market: str, *, excluding: Iterable[str] = ()) -> bool:
        """Some online host in `market` has the category (other than the hosts `excluding`)."""
        present = self.category_mask(category) & self.market_mask(market) & self.online
        present[[slot for h in excluding if (slot := self._slots.get(h)) is not None]] = False
        return bool(present.any())

    def any_present(self, host_ids: Iterable[str], market: str) -> bool:
        """One of `host_ids` is online and sells to `market`."""
        mask = self.market_mask(market)
        return any((slot := self._slots.get(h)) is not None and self.online[slot] and mask[slot] for h in host_ids)
