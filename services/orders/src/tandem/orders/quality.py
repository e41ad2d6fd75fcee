"""Call quality kept beside the consultations: one row per call, worker, leg and direction from the
media workers' quality summaries (the QUALITY stream), so quality can be joined with conversion."""

from __future__ import annotations

import logging
from datetime import UTC

import asyncpg
from google.protobuf.descriptor import EnumDescriptor

from tandem.v1 import media_pb2, quality_pb2

logger = logging.getLogger(__name__)

# Idempotent: a summary delivered again writes the same row again.
UPSERT = """
INSERT INTO call_quality (call_id, worker_id, leg, direction, started_at, ended_at, windows, rtt_ms, rtt_max_ms,
                          audio_loss, audio_loss_max, audio_jitter_ms, mos, mos_min, audio_gaps, audio_gap_s,
                          talk_time_s, video_loss, video_loss_max, video_jitter_ms, frame_rate, width, height,
                          freezes, freeze_s, video_nacks, video_plis)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
        $24, $25, $26, $27)
ON CONFLICT (call_id, worker_id, leg, direction) DO UPDATE SET
    started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, windows = EXCLUDED.windows,
    rtt_ms = EXCLUDED.rtt_ms, rtt_max_ms = EXCLUDED.rtt_max_ms, audio_loss = EXCLUDED.audio_loss,
    audio_loss_max = EXCLUDED.audio_loss_max, audio_jitter_ms = EXCLUDED.audio_jitter_ms, mos = EXCLUDED.mos,
    mos_min = EXCLUDED.mos_min, audio_gaps = EXCLUDED.audio_gaps, audio_gap_s = EXCLUDED.audio_gap_s,
    talk_time_s = EXCLUDED.talk_time_s, video_loss = EXCLUDED.video_loss, video_loss_max = EXCLUDED.video_loss_max,
    video_jitter_ms = EXCLUDED.video_jitter_ms, frame_rate = EXCLUDED.frame_rate, width = EXCLUDED.width,
    height = EXCLUDED.height, freezes = EXCLUDED.freezes, freeze_s = EXCLUDED.freeze_s,
    video_nacks = EXCLUDED.video_nacks, video_plis = EXCLUDED.video_plis
"""


def _name(enum: EnumDescriptor, value: int) -> str:
    """The enum value's name; a number a newer worker sent that this build does not know stays a number."""
    known = enum.values_by_number.get(value)
    return known.name if known is not None else str(value)


def _row(summary: quality_pb2.MediaQualitySummary, leg: quality_pb2.LegQualitySummary) -> tuple[object, ...]:
    t, a, v = leg.total, leg.total.audio, leg.total.video
    audio = (
        a.rtp.loss_fraction, leg.audio_loss_max, a.rtp.jitter_ms, a.mos, leg.mos_min, a.gaps, a.gap_duration_s,
        a.talk_time_s,
    )  # fmt: skip
    video = (
        v.rtp.loss_fraction, leg.video_loss_max, v.rtp.jitter_ms, v.frame_rate, v.width, v.height, v.freezes,
        v.freeze_duration_s, v.rtp.nacks, v.rtp.plis,
    )  # fmt: skip
    return (
        summary.call_id, summary.worker_id, _name(media_pb2.Leg.DESCRIPTOR, t.leg),
        _name(quality_pb2.Direction.DESCRIPTOR, t.direction),
        t.window_start.ToDatetime(tzinfo=UTC), t.window_end.ToDatetime(tzinfo=UTC), t.sequence, t.rtt_ms,
        leg.rtt_max_ms,
        *(audio if t.HasField("audio") else (None,) * len(audio)),
        *(video if t.HasField("video") else (None,) * len(video)),
    )  # fmt: skip


async def record_quality_summary(pool: asyncpg.Pool, summary: quality_pb2.MediaQualitySummary) -> None:
    """Store every leg and direction of a call's quality summary, in one transaction. A summary
    that names no call or worker cannot be joined with anything: it is logged and dropped."""
    if not summary.call_id or not summary.worker_id:
        logger.error("quality summary without call or worker dropped", extra={"worker_id": summary.worker_id[:64]})
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(UPSERT, [_row(summary, leg) for leg in summary.legs])
