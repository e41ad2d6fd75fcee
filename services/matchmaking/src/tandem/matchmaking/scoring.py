"""How well a host fits a shopper's request: a pure function, tested without I/O.

Language and market are hard constraints (the host must speak the shopper's language and may sell
to the shopper's market); category, returning-customer affinity and idle time add to the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class HostProfile:
    host_id: str
    languages: frozenset[str]
    categories: frozenset[str]
    markets: frozenset[str]
    idle_since: datetime


@dataclass(frozen=True)
class ShopperNeed:
    language: str
    market: str
    category: str = ""
    excluded_host_ids: frozenset[str] = frozenset()
    # Hosts this shopper bought from before.
    previous_host_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Weights:
    category: float = 40.0
    returning_customer: float = 100.0
    # Points per minute idle, capped so a long-idle host cannot outrank skill and affinity.
    idle_per_minute: float = 1.0
    idle_cap_minutes: float = 30.0


def _primary(tag: str) -> str:
    return tag.split("-", 1)[0].lower()


def speaks(host_languages: frozenset[str], language: str) -> bool:
    """BCP 47 match: an exact tag, or the same primary language ("pt-BR" and "pt")."""
    wanted = language.lower()
    return any(tag.lower() == wanted or _primary(tag) == _primary(wanted) for tag in host_languages)


def score(host: HostProfile, need: ShopperNeed, now: datetime, weights: Weights = Weights()) -> float | None:
    """The host's score for this need, or None when the host cannot take the call."""
    if host.host_id in need.excluded_host_ids:
        return None
    if need.language and not speaks(host.languages, need.language):
        return None
    if need.market and need.market.upper() not in {m.upper() for m in host.markets}:
        return None
    total = 0.0
    if need.category and need.category.lower() in {c.lower() for c in host.categories}:
        total += weights.category
    if host.host_id in need.previous_host_ids:
        total += weights.returning_customer
    idle_minutes = max(0.0, (now - host.idle_since).total_seconds() / 60.0)
    total += weights.idle_per_minute * min(idle_minutes, weights.idle_cap_minutes)
    return total


def rank(
    hosts: list[HostProfile], need: ShopperNeed, now: datetime, weights: Weights = Weights()
) -> list[tuple[float, HostProfile]]:
    """Eligible hosts, best first; ties go to the longest idle, then to the host id (deterministic)."""
    scored = [(s, h) for h in hosts if (s := score(h, need, now, weights)) is not None]
    scored.sort(key=lambda pair: (-pair[0], pair[1].idle_since, pair[1].host_id))
    return scored
