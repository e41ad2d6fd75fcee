"""Scoring and ranking of hosts for a shopper's request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.matchmaking.scoring import HostProfile, ShopperNeed, Weights, rank, score, speaks

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def host(host_id: str, *, languages: tuple[str, ...] = ("en",), categories: tuple[str, ...] = ("beauty",),
         markets: tuple[str, ...] = ("US",), idle_minutes: float = 0) -> HostProfile:  # fmt: skip
    return HostProfile(
        host_id, frozenset(languages), frozenset(categories), frozenset(markets), NOW - timedelta(minutes=idle_minutes)
    )


NEED = ShopperNeed(language="en", market="US", category="beauty")


def test_language_and_market_are_hard_constraints() -> None:
    assert score(host("a", languages=("ja",)), NEED, NOW) is None
    assert score(host("a", markets=("DE",)), NEED, NOW) is None
    assert score(host("a"), NEED, NOW) is not None


def test_language_tags_match_on_the_primary_language() -> None:
    assert speaks(frozenset({"pt"}), "pt-BR")
    assert speaks(frozenset({"pt-BR"}), "pt")
    assert speaks(frozenset({"EN-us"}), "en-US")
    assert not speaks(frozenset({"pt"}), "es")


def test_a_host_who_sold_to_the_shopper_before_outranks_a_long_idle_stranger() -> None:
    need = ShopperNeed(language="en", market="US", category="beauty", previous_host_ids=frozenset({"b"}))
    ranked = rank([host("a", idle_minutes=30), host("b", idle_minutes=1)], need, NOW)
    assert [h.host_id for _, h in ranked] == ["b", "a"]


def test_category_expertise_counts_and_idle_time_breaks_ties() -> None:
    ranked = rank(
        [host("generalist", categories=("fashion",), idle_minutes=20), host("expert", idle_minutes=2),
         host("expert-idle", idle_minutes=5)],
        NEED, NOW,
    )  # fmt: skip
    assert [h.host_id for _, h in ranked] == ["expert-idle", "expert", "generalist"]


def test_excluded_hosts_are_never_offered_again() -> None:
    need = ShopperNeed(language="en", market="US", excluded_host_ids=frozenset({"a"}))
    assert [h.host_id for _, h in rank([host("a"), host("b")], need, NOW)] == ["b"]


hosts = st.lists(
    st.builds(
        host,
        st.text("abcdef", min_size=1, max_size=4),
        languages=st.sets(st.sampled_from(["en", "ja", "de", "pt-BR"]), min_size=1).map(tuple),
        categories=st.sets(st.sampled_from(["beauty", "fashion"])).map(tuple),
        markets=st.sets(st.sampled_from(["US", "JP", "DE"]), min_size=1).map(tuple),
        idle_minutes=st.floats(0, 600),
    ),
    max_size=12,
    unique_by=lambda h: h.host_id,
)
needs = st.builds(
    ShopperNeed,
    language=st.sampled_from(["en", "ja", "pt"]),
    market=st.sampled_from(["US", "JP"]),
    category=st.sampled_from(["beauty", "fashion", ""]),
    excluded_host_ids=st.frozensets(st.text("abcdef", min_size=1, max_size=4), max_size=3),
    previous_host_ids=st.frozensets(st.text("abcdef", min_size=1, max_size=4), max_size=3),
)


@given(hosts, needs)
def test_ranking_is_sorted_eligible_and_deterministic(candidates: list[HostProfile], need: ShopperNeed) -> None:
    ranked = rank(candidates, need, NOW)
    scores = [s for s, _ in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(h.host_id not in need.excluded_host_ids and speaks(h.languages, need.language) for _, h in ranked)
    eligible = {h.host_id for h in candidates if score(h, need, NOW) is not None}
    assert {h.host_id for _, h in ranked} == eligible
    assert rank(list(reversed(candidates)), need, NOW) == ranked


@given(st.floats(0, 10_000), st.floats(0, 10_000))
def test_idle_time_never_outweighs_affinity(idle_a: float, idle_b: float) -> None:
    weights = Weights()
    need = ShopperNeed(language="en", market="US", previous_host_ids=frozenset({"returning"}))
    ranked = rank([host("stranger", idle_minutes=idle_a), host("returning", idle_minutes=idle_b)], need, NOW, weights)
    assert ranked[0][1].host_id == "returning"
