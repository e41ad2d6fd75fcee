"""Shard leases: one holder at a time, tokens that grow with every holder, shards spread."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.common import subjects
from tandem.matchmaking.shards import ShardLease, acquired, preferred_holder, renewed

pytestmark = pytest.mark.unit


def test_a_live_lease_cannot_be_taken_and_a_lapsed_one_is_taken_with_a_higher_token() -> None:
    first = acquired(None, "a", now_ms=1000, ttl_ms=1000)
    assert first == ShardLease(holder="a", token=1, expires_at_ms=2000)
    assert acquired(first, "b", now_ms=1999, ttl_ms=1000) is None
    second = acquired(first, "b", now_ms=2000, ttl_ms=1000)
    assert second is not None
    assert (second.holder, second.token) == ("b", 2)


def test_only_the_holder_with_its_token_renews() -> None:
    lease = ShardLease(holder="a", token=3, expires_at_ms=2000)
    renewal = renewed(lease, "a", 3, now_ms=1500, ttl_ms=1000)
    assert renewal is not None
    assert renewal.expires_at_ms == 2500
    assert renewed(lease, "b", 3, now_ms=1500, ttl_ms=1000) is None
    assert renewed(lease, "a", 2, now_ms=1500, ttl_ms=1000) is None


@given(st.sets(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=6))
def test_every_instance_agrees_on_the_preferred_holder(members: set[str]) -> None:
    shard = subjects.match_shard("eu", "de")
    assert preferred_holder(shard, sorted(members)) == preferred_holder(shard, sorted(members, reverse=True))


def test_shards_spread_over_instances() -> None:
    shards = [subjects.match_shard("eu", lang) for lang in ("en", "de", "fr", "es", "it", "pt", "ja", "ko", "zh")]
    holders = {preferred_holder(shard, ["mm-1", "mm-2", "mm-3"]) for shard in shards}
    assert holders == {"mm-1", "mm-2", "mm-3"}


def test_the_shard_of_a_language_tag_is_its_primary_language() -> None:
    assert subjects.match_shard("eu", "pt-BR") == "eu.pt"
    for bad in ("", "p", "a.b", "e n", "1234"):
        with pytest.raises(ValueError, match="invalid"):
            subjects.match_shard("eu", bad)
