"""The hold audit: a host is freed only from a hold its call has shown abandoned in two rounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.matchmaking.holds import HoldAudit, abandoned
from tandem.v1 import calls_pb2, common_pb2, matchmaking_pb2

pytestmark = pytest.mark.unit

NOW_NS = 1_800_000_000 * 10**9
BUSY, AVAILABLE = matchmaking_pb2.HOST_STATUS_BUSY, matchmaking_pb2.HOST_STATUS_AVAILABLE


def hold(host_id: str, call_id: str, *, age_s: float = 120.0, status: int = BUSY) -> matchmaking_pb2.HostPresence:
    record = matchmaking_pb2.HostPresence(host_id=host_id, status=status, call_id=call_id)  # type: ignore[arg-type]
    record.updated_at.FromNanoseconds(NOW_NS - int(age_s * 1e9))
    return record


def call(host_id: str, state: int = common_pb2.CALL_STATE_CONNECTED) -> calls_pb2.CallRecord:
    return calls_pb2.CallRecord(host_id=host_id, state=state)  # type: ignore[arg-type]


def test_a_call_that_is_gone_ended_or_has_another_host_no_longer_holds_the_host() -> None:
    record = hold("h1", "c1")
    assert abandoned(record, None)
    assert abandoned(record, call("h1", common_pb2.CALL_STATE_ENDED))
    assert abandoned(record, call("h2", common_pb2.CALL_STATE_RINGING))
    assert abandoned(record, call("", common_pb2.CALL_STATE_QUEUED))  # moved on to another host
    for state in (common_pb2.CALL_STATE_RINGING, common_pb2.CALL_STATE_CONNECTING, common_pb2.CALL_STATE_CONNECTED):
        assert not abandoned(record, call("h1", state))


def test_only_busy_holds_unchanged_for_an_interval_are_looked_up() -> None:
    audit = HoldAudit(60.0)
    records = [hold("old", "c1"), hold("young", "c2", age_s=30), hold("free", "", status=AVAILABLE)]
    assert [r.host_id for r in audit.due(records, NOW_NS)] == ["old"]


# A round: for each of three hosts, either no hold looked up, or its hold (call c0..c2) and whether
# its call still has the host.
rounds = st.lists(
    st.lists(st.one_of(st.none(), st.tuples(st.integers(0, 2), st.booleans())), min_size=3, max_size=3),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(rounds)
def test_a_host_is_released_only_after_two_rounds_in_a_row_abandoned_for_the_same_call(
    script: list[list[tuple[int, bool] | None]],
) -> None:
    audit = HoldAudit(60.0)
    before: dict[str, tuple[str, bool]] = {}
    for looked in script:
        now: dict[str, tuple[str, bool]] = {}
        lookups = []
        for n, seen in enumerate(looked):
            if seen is None:
                continue
            host_id, call_id, live = f"h{n}", f"c{seen[0]}", seen[1]
            now[host_id] = (call_id, live)
            lookups.append((hold(host_id, call_id), call(host_id if live else "", common_pb2.CALL_STATE_QUEUED)))
        released = {(r.host_id, r.call_id) for r in audit.judge(lookups)}
        expected = {
            (host_id, call_id)
            for host_id, (call_id, live) in now.items()
            if not live and before.get(host_id) == (call_id, False)
        }  # fmt: skip
        assert released == expected
        before = now
