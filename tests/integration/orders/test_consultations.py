"""Consultations converge whatever the order and number of deliveries of the call facts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.orders.consultations import record_call_event
from tandem.orders.schema import apply_schema
from tandem.v1 import calls_pb2, common_pb2

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await apply_schema(conn)
    yield pool
    await pool.close()


def event(state: common_pb2.CallState.ValueType, seconds: int, **fields: object) -> calls_pb2.CallEvent:
    e = calls_pb2.CallEvent(call_id="c1", shopper_id="s1", market="JP", state=state, **fields)  # type: ignore[arg-type]
    e.at.FromDatetime(T0 + timedelta(seconds=seconds))
    return e


async def test_out_of_order_and_replayed_facts_converge(pool: asyncpg.Pool) -> None:
    facts = [
        event(common_pb2.CALL_STATE_REQUESTED, 0),
        event(common_pb2.CALL_STATE_RINGING, 1, host_id="h1"),
        event(common_pb2.CALL_STATE_CONNECTED, 3, host_id="h1"),
        event(common_pb2.CALL_STATE_ENDED, 60, host_id="h1", reason=common_pb2.END_REASON_HANGUP),
    ]
    for fact in [facts[3], facts[0], facts[2], facts[1], facts[3], facts[0]]:
        await record_call_event(pool, fact)
    row = await pool.fetchrow("SELECT * FROM consultations WHERE call_id = 'c1'")
    assert row is not None
    assert (row["state"], row["end_reason"], row["host_id"]) == ("CALL_STATE_ENDED", "END_REASON_HANGUP", "h1")
    stamps = [row["requested_at"], row["ringing_at"], row["connected_at"], row["ended_at"]]
    assert stamps == [T0 + timedelta(seconds=s) for s in (0, 1, 3, 60)]
    assert row["updated_at"] == T0 + timedelta(seconds=60)


LIFECYCLE: tuple[tuple[common_pb2.CallState.ValueType, int, dict[str, object]], ...] = (
    (common_pb2.CALL_STATE_REQUESTED, 0, {}),
    (common_pb2.CALL_STATE_RINGING, 1, {"host_id": "h1"}),
    (common_pb2.CALL_STATE_CONNECTED, 3, {"host_id": "h1"}),
    (common_pb2.CALL_STATE_ENDED, 60, {"host_id": "h1", "reason": common_pb2.END_REASON_HANGUP}),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(LIFECYCLE))), redeliveries=st.lists(st.integers(0, 3), max_size=6))
async def test_any_order_of_deliveries_with_redeliveries_converges(
    pool: asyncpg.Pool, order: list[int], redeliveries: list[int]
) -> None:
    """What a consumer sees across restarts: every fact at least once, in any order, some again."""
    call_id = f"c-{uuid.uuid4().hex[:12]}"
    facts = []
    for state, seconds, fields in LIFECYCLE:
        fact = event(state, seconds, **fields)
        fact.call_id = call_id
        facts.append(fact)
    for index in [*order, *redeliveries]:
        await record_call_event(pool, facts[index])
    row = await pool.fetchrow("SELECT * FROM consultations WHERE call_id = $1", call_id)
    assert row is not None
    assert (row["state"], row["end_reason"], row["host_id"]) == ("CALL_STATE_ENDED", "END_REASON_HANGUP", "h1")
    stamps = [row["requested_at"], row["ringing_at"], row["connected_at"], row["ended_at"]]
    assert stamps == [T0 + timedelta(seconds=s) for _, s, _ in LIFECYCLE]
    assert row["updated_at"] == T0 + timedelta(seconds=60)
