"""The media workers' quality summaries land in PostgreSQL beside the consultations, once per
call, worker, leg and direction however often they are delivered, joinable with conversion."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.http import HttpServer
from tandem.orders.app import OrdersApp
from tandem.orders.settings import Settings
from tandem.v1 import calls_pb2, common_pb2, media_pb2, quality_pb2

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
async def orders(bus: Bus, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    app = OrdersApp(Settings(database_url=database_url, nats_url=bus.config.servers[0]), "orders-1")
    await app.start(bus, HttpServer("127.0.0.1", 0))
    assert app.pool is not None
    yield app.pool
    await app.stop()
    await app.close()


def leg_summary(
    leg: media_pb2.Leg.ValueType, direction: quality_pb2.Direction.ValueType, *, mos_min: float, freezes: int
) -> quality_pb2.LegQualitySummary:
    total = quality_pb2.MediaQuality(call_id="c1", leg=leg, direction=direction, sequence=12, rtt_ms=42.0)
    total.window_start.FromDatetime(T0)
    total.window_end.FromDatetime(T0 + timedelta(seconds=60))
    total.audio.rtp.loss_fraction = 0.01
    total.audio.mos = mos_min + 0.2
    total.video.frame_rate = 29.5
    total.video.freezes = freezes
    total.video.freeze_duration_s = 0.7 * freezes
    return quality_pb2.LegQualitySummary(total=total, mos_min=mos_min, audio_loss_max=0.04, rtt_max_ms=80.0)


async def rows(pool: asyncpg.Pool, query: str, n: int) -> list[asyncpg.Record]:
    for _ in range(100):
        found = await pool.fetch(query)
        if len(found) >= n:
            return found
        await asyncio.sleep(0.05)
    return await pool.fetch(query)


async def test_a_summary_delivered_twice_is_one_row_per_leg_joined_with_its_consultation(
    bus: Bus, orders: asyncpg.Pool
) -> None:
    ended = calls_pb2.CallEvent(
        call_id="c1", shopper_id="s1", host_id="h1", market="JP", state=common_pb2.CALL_STATE_ENDED,
        reason=common_pb2.END_REASON_HANGUP,
    )  # fmt: skip
    ended.at.FromDatetime(T0 + timedelta(seconds=60))
    await bus.publish_fact(subjects.join(subjects.CALL_EVENTS, "c1"), ended, msg_id="c1-ended")
    summary = quality_pb2.MediaQualitySummary(call_id="c1", worker_id="w1")
    summary.legs.extend([
        leg_summary(media_pb2.LEG_SHOPPER, quality_pb2.DIRECTION_INBOUND, mos_min=3.1, freezes=2),
        leg_summary(media_pb2.LEG_SHOPPER, quality_pb2.DIRECTION_OUTBOUND, mos_min=4.3, freezes=0),
        leg_summary(media_pb2.LEG_HOST, quality_pb2.DIRECTION_INBOUND, mos_min=4.2, freezes=1),
    ])  # fmt: skip
    subject = subjects.join(subjects.QUALITY_SUMMARIES, "c1")
    for attempt in range(2):  # delivered again after JetStream's duplicate window, say
        await bus.publish_fact(subject, summary, msg_id=f"w1.c1.summary.{attempt}")
    await bus.publish_fact(subject, quality_pb2.MediaQualitySummary(worker_id="w1"), msg_id="no-call")

    stored = await rows(orders, "SELECT * FROM call_quality ORDER BY leg, direction", 3)
    await asyncio.sleep(0.3)  # the second delivery has been consumed too
    assert await orders.fetchval("SELECT count(*) FROM call_quality") == 3
    first = stored[0]
    assert (first["call_id"], first["worker_id"], first["leg"], first["direction"]) == (
        "c1", "w1", "LEG_HOST", "DIRECTION_INBOUND",
    )  # fmt: skip
    assert (first["windows"], first["rtt_ms"], first["rtt_max_ms"], first["mos_min"]) == (12, 42.0, 80.0, 4.2)
    assert (first["started_at"], first["ended_at"]) == (T0, T0 + timedelta(seconds=60))
    assert first["freezes"] == 1

    await orders.execute(
        """INSERT INTO orders (order_id, call_id, shopper_id, host_id, currency, total_minor, placed_at)
           VALUES ($1, 'c1', 's1', 'h1', 'JPY', 11800, $2)""",
        uuid.uuid4(), T0,
    )  # fmt: skip
    (view,) = await rows(orders, "SELECT * FROM consultation_quality WHERE call_id = 'c1'", 1)
    assert view["end_reason"] == "END_REASON_HANGUP"
    assert (view["mos_min"], view["audio_loss_max"], view["rtt_max_ms"]) == (3.1, 0.04, 80.0)
    assert (view["freezes"], view["freeze_s"]) == (3, pytest.approx(2.1))  # what the worker received
    assert view["measured"]
    assert view["converted"]


async def test_a_leg_this_build_does_not_know_is_kept_by_number(bus: Bus, orders: asyncpg.Pool) -> None:
    summary = quality_pb2.MediaQualitySummary(call_id="c2", worker_id="w1")
    summary.legs.append(leg_summary(7, quality_pb2.DIRECTION_INBOUND, mos_min=4.0, freezes=0))  # type: ignore[arg-type]
    summary.legs[0].total.ClearField("video")
    await bus.publish_fact(subjects.join(subjects.QUALITY_SUMMARIES, "c2"), summary, msg_id="c2")
    (row,) = await rows(orders, "SELECT * FROM call_quality WHERE call_id = 'c2'", 1)
    assert row["leg"] == "7"
    assert row["mos_min"] == 4.0
    assert (row["frame_rate"], row["freezes"]) == (None, None)  # no video on that leg
