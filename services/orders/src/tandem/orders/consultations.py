"""Consultations recorded from the call lifecycle facts (the CALLS stream)."""

from __future__ import annotations

from datetime import UTC

import asyncpg

from tandem.v1 import calls_pb2, common_pb2

# Idempotent upsert: replays and out-of-order deliveries converge, because an ended consultation stays
# ended, each stage's timestamp is set once, and empty fields never overwrite known ones.
UPSERT = """
INSERT INTO consultations (call_id, shopper_id, host_id, product_id, category, language, market, state,
                           end_reason, updated_at, requested_at, ringing_at, connected_at, ended_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
        CASE WHEN $8::text = 'CALL_STATE_REQUESTED' THEN $10::timestamptz END,
        CASE WHEN $8::text = 'CALL_STATE_RINGING' THEN $10::timestamptz END,
        CASE WHEN $8::text = 'CALL_STATE_CONNECTED' THEN $10::timestamptz END,
        CASE WHEN $8::text = 'CALL_STATE_ENDED' THEN $10::timestamptz END)
ON CONFLICT (call_id) DO UPDATE SET
    host_id = CASE WHEN $3 <> '' THEN $3 ELSE consultations.host_id END,
    state = CASE WHEN consultations.state = 'CALL_STATE_ENDED' THEN consultations.state ELSE $8 END,
    end_reason = CASE WHEN $9 <> '' THEN $9 ELSE consultations.end_reason END,
    updated_at = GREATEST(consultations.updated_at, $10),
    requested_at = COALESCE(consultations.requested_at, EXCLUDED.requested_at),
    ringing_at = COALESCE(consultations.ringing_at, EXCLUDED.ringing_at),
    connected_at = COALESCE(consultations.connected_at, EXCLUDED.connected_at),
    ended_at = COALESCE(consultations.ended_at, EXCLUDED.ended_at)
"""


async def record_call_event(pool: asyncpg.Pool, event: calls_pb2.CallEvent) -> None:
    """Upsert the consultation this call event belongs to."""
    await pool.execute(
        UPSERT,
        event.call_id, event.shopper_id, event.host_id, event.product_id, event.category, event.language,
        event.market, common_pb2.CallState.Name(event.state),
        common_pb2.EndReason.Name(event.reason) if event.reason else "", event.at.ToDatetime(tzinfo=UTC),
    )  # fmt: skip
