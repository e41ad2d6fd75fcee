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
    announced,
    released,
    reserved,
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
    """Against a model of the host: its call, whether its socket is open, what it last asked to be,
    its missed calls in a row (paused at 3)."""
    record: HostPresence | None = announced(None, update(), NOW_NS)
    holder: str | None = None
    connected, wants, misses, status = True, True, 0, AVAILABLE
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
            assert (new is None) == (status != AVAILABLE)
            if new is None:
                continue
            assert holder is None, "a host got a second call"
            record, holder, highest[shard], status = new, f"c{call}", token, BUSY
        elif step[0] == "release":
            _, call, outcome = step
            new = released(record, release(f"c{call}", outcome), NOW_NS, pause_after_misses=3)
            assert (new is not None) == (holder == f"c{call}")
            if new is not None:
                record, holder = new, None
                misses = {1: 0, 2: misses + 1, 3: misses + 1, 4: misses}[outcome]
                status = OFFLINE if not connected else AWAY if misses >= 3 or not wants else AVAILABLE
        elif step[0] == "announce":
            record = announced(record, update(step[1]), NOW_NS)
            connected, wants = True, step[1]
            if holder is None:
                misses = misses if status == AVAILABLE and wants else 0
                status = AVAILABLE if wants else AWAY
        else:  # the socket closed: a host in a call keeps it (the call may resume)
            record = went(record, matchmaking_pb2.PresenceGone(host_id="h1", signaling_instance="sig-1"), NOW_NS)
            connected = False
            if holder is None:
                status = OFFLINE
        assert record is not None
        assert (record.status, record.call_id, record.missed_in_row) == (status, holder or "", misses)


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
    assert (gone.status, gone.call_id) == (BUSY, "c1"), "the call may still resume"
    ended = released(gone, release("c1", matchmaking_pb2.HOST_OUTCOME_COMPLETED), NOW_NS, pause_after_misses=3)
    assert ended is not None
    assert ended.status == OFFLINE


def test_a_host_whose_socket_blips_during_a_call_is_not_offered_again_until_the_call_is_released() -> None:
    busy = reserved(announced(None, update(), NOW_NS), "c1", "local.en", 1, NOW_NS)
    assert busy is not None
    gone = went(busy, matchmaking_pb2.PresenceGone(host_id="h1", signaling_instance="sig-1"), NOW_NS)
    assert gone is not None
    back = announced(gone, update(), NOW_NS)  # the app reconnects and announces itself again
    assert back.status == BUSY
    assert reserved(back, "c2", "local.en", 1, NOW_NS) is None
    ended = released(back, release("c1", matchmaking_pb2.HOST_OUTCOME_COMPLETED), NOW_NS, pause_after_misses=3)
    assert ended is not None
    assert ended.status == AVAILABLE


def test_a_host_reserved_but_never_called_keeps_its_place_among_the_longest_idle() -> None:
    record = announced(None, update(), NOW_NS)
    later = NOW_NS + 60 * 10**9
    for outcome, idle_since in [(matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED, NOW_NS),
                                (matchmaking_pb2.HOST_OUTCOME_COMPLETED, later)]:  # fmt: skip
        busy = reserved(record, "c1", "local.en", 1, NOW_NS)
        assert busy is not None
        freed = released(busy, release("c1", outcome), later, pause_after_misses=3)
        assert freed is not None
        assert freed.idle_since.ToNanoseconds() == idle_since
