"""Consultations recorded from the call lifecycle facts (the CALLS stream)."""

from __future__ import annotations

from datetime import UTC

import asyncpg

from tandem.v1 import calls_pb2, common_pb2

_STAMP_COLUMN = {
    common_pb2.CALL_STATE_REQUESTED: "requested_at",
    common_pb2.CALL_STATE_RINGING: "ringing_at",
    common_pb2.CALL_STATE_CONNECTED: "connected_at",
    common_pb2.CALL_STATE_ENDED: "ended_at",
}


async def record_call_event(pool: asyncpg.Pool, event: calls_pb2.CallEvent) -> None:
    """Upsert the consultation. Idempotent: replays and out-of-order deliveries converge, because an
    ended consultation stays ended and each timestamp is set once."""
    at = event.at.ToDatetime(tzinfo=UTC)
    state = common_pb2.CallState.Name(event.state)
    reason = common_pb2.EndReason.Name(event.reason) if event.reason else ""
    column = _STAMP_COLUMN.get(event.state)
    stamp = f", {column} = COALESCE(consultations.{column}, $11)" if column else ""
    await pool.execute(
        f"""INSERT INTO consultations (call_id, shopper_id, host_id, product_id, category, language, market,
                                       state, end_reason, updated_at{", " + column if column else ""})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10{", $11" if column else ""})
            ON CONFLICT (call_id) DO UPDATE SET
                host_id = CASE WHEN $3 <> '' THEN $3 ELSE consultations.host_id END,
                state = CASE WHEN consultations.state = 'CALL_STATE_ENDED'
                             THEN consultations.state ELSE $8 END,
                end_reason = CASE WHEN $9 <> '' THEN $9 ELSE consultations.end_reason END,
                updated_at = GREATEST(consultations.updated_at, $10){stamp}""",  # noqa: S608 - fixed map
        event.call_id, event.shopper_id, event.host_id, event.product_id, event.category, event.language,
        event.market, state, reason, at, *([at] if column else []),
    )  # fmt: skip
