"""Presence transitions: one call per host, fenced-out matchers refused, paused after misses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.matchmaking.presence import (
    AVAILABLE,
    AWAY,
    BUSY,
    OFFLINE,
    HostPresence,
    InvalidPresence,
    announced,
    released,
    reserved,
    valid_id,
    went,
)  # fmt: skip
from tandem.matchmaking.shards import FencedOut
from tandem.v1 import client_pb2, matchmaking_pb2

pytestmark = pytest.mark.unit

NOW_NS = 1_800_000_000 * 10**9
SHARDS = ("local.en", "local.de")


def update(available: bool = True, instance: str = "sig-1") -> matchmaking_pb2.PresenceUpdate:
    availability = client_pb2.HostAvailability(available=available, languages=["en", "de"], markets=["US"])
    return matchmaking_pb2.PresenceUpdate(host_id="h1", availability=availability, signaling_instance=instance)


def release(call_id: str, outcome: int) -> matchmaking_pb2.HostRelease:
    return matchmaking_pb2.HostRelease(host_id="h1", call_id=call_id, outcome=outcome)  # type: ignore[arg-type]


# One step against the host's record: a matcher (shard, token) reserving for a call, a release of a
# call, the host announcing itself or its socket closing.
steps = st.one_of(
    st.tuples(st.just("reserve"), st.sampled_from(SHARDS), st.integers(1, 6), st.integers(0, 9)),
    st.tuples(st.just("release"), st.integers(0, 9), st.sampled_from([1, 2, 3, 4])),
    st.tuples(st.just("announce"), st.booleans()),
    st.tuples(
        st.just("gone"),
    ),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(steps, max_size=40))
def test_a_host_holds_at_most_one_call_and_fenced_out_reservations_are_refused(script: list[tuple]) -> None:  # type: ignore[type-arg]
    record: HostPresence | None = announced(None, update(), NOW_NS)
    holder: str | None = None
    highest: dict[str, int] = {}
    for step in script:
        assert record is not None
        if step[0] == "reserve":
            _, shard, token, call = step
            if token < highest.get(shard, 0):
                with pytest.raises(FencedOut) as refused:
                    reserved(record, f"c{call}", shard, token, NOW_NS)
                assert refused.value.fence == highest[shard]
                continue
            new = reserved(record, f"c{call}", shard, token, NOW_NS)
            if new is None:
                assert record.status != AVAILABLE
                continue
            assert holder is None, "a host got a second call"
            record, holder, highest[shard] = new, f"c{call}", token
        elif step[0] == "release":
            _, call, outcome = step
            new = released(record, release(f"c{call}", outcome), NOW_NS, pause_after_misses=3)
            if new is not None:
                assert holder == f"c{call}"
                record, holder = new, None
        elif step[0] == "announce":
            record = announced(record, update(step[1]), NOW_NS)
        else:
            record = went(record, matchmaking_pb2.PresenceGone(host_id="h1", signaling_instance="sig-1"), NOW_NS)
            holder = None
        assert record is not None
        assert (record.status == BUSY) == (holder is not None)
        assert record.call_id == (holder or "")


def test_a_host_is_paused_after_missing_calls_in_a_row_and_an_accepted_call_resets_the_count() -> None:
    record = announced(None, update(), NOW_NS)
    outcomes = [matchmaking_pb2.HOST_OUTCOME_DECLINED, matchmaking_pb2.HOST_OUTCOME_COMPLETED,
                matchmaking_pb2.HOST_OUTCOME_RING_TIMEOUT, matchmaking_pb2.HOST_OUTCOME_DECLINED,
                matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED, matchmaking_pb2.HOST_OUTCOME_RING_TIMEOUT]  # fmt: skip
    statuses = []
    for n, outcome in enumerate(outcomes):
        busy = reserved(record, f"c{n}", "local.en", 1, NOW_NS)
        assert busy is not None
        freed = released(busy, release(f"c{n}", outcome), NOW_NS, pause_after_misses=3)
        assert freed is not None
        record = freed
        statuses.append(record.status)
    assert statuses == [AVAILABLE] * 5 + [AWAY]
    back = announced(record, update(), NOW_NS)
    assert (back.status, back.missed_in_row) == (AVAILABLE, 0)


def test_a_host_in_a_call_stays_busy_whatever_it_announces_and_another_instance_keeps_it_online() -> None:
    busy = reserved(announced(None, update(), NOW_NS), "c1", "local.en", 1, NOW_NS)
    assert busy is not None
    assert announced(busy, update(available=False), NOW_NS).status == BUSY
    moved = announced(busy, update(instance="sig-2"), NOW_NS)
    assert went(moved, matchmaking_pb2.PresenceGone(host_id="h1", signaling_instance="sig-1"), NOW_NS) is None
    gone = went(moved, matchmaking_pb2.PresenceGone(host_id="h1", signaling_instance="sig-2"), NOW_NS)
    assert gone is not None
    assert gone.status == OFFLINE


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "x" * 65, "h*", "é"])
def test_ids_that_could_change_a_key_or_subject_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPresence):
        valid_id("host_id", bad)
