"""The transactional outbox relay: rows written with an order are published to JetStream with
`Nats-Msg-Id` = the row id, then marked published. A crash between publish and mark re-publishes
the row, and JetStream's duplicate window drops the copy: the event lands exactly once.

The relay outlives both servers: a failed sweep (PostgreSQL restarting, NATS reconnecting, JetStream
not answering) is retried every poll interval. A row is re-published only after a sweep that
published it failed to mark it, at the first sweep that succeeds again, so an event lands once as
long as the outage is shorter than the stream's duplicate window (`StreamSpec.duplicate_window_s`,
10 minutes); consumers of `OrderPlaced` stay idempotent on `order_id` for longer ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import nats.errors
from prometheus_client import Counter, Gauge

from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.v1 import orders_pb2

logger = logging.getLogger(__name__)

PUBLISHED = Counter("tandem_orders_outbox_published_total", "Outbox rows published")
BACKLOG = Gauge("tandem_orders_outbox_backlog", "Unpublished outbox rows seen by the last sweep")


# A sweep's usual failures: PostgreSQL restarting (asyncpg's own errors on a connection that just
# closed included), NATS reconnecting, JetStream not answering in time.
_SWEEP_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    nats.errors.Error,
)


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, *, poll_interval_s: float, batch: int) -> None:
        self.pool = pool
        self.bus = bus
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                while await self.sweep() == self.batch:
                    pass
            except (*_SWEEP_ERRORS, TandemError) as exc:
                logger.warning("outbox sweep failed; retrying", extra={"error": repr(exc)})
            except Exception:  # a relay that stopped would publish nothing until the next deploy
                logger.exception("outbox sweep failed unexpectedly; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_interval_s)
            self.wake.clear()

    async def sweep(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, subject, payload FROM outbox WHERE published_at IS NULL
                   ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self.batch,
            )
            BACKLOG.set(len(rows))
            for row in rows:
                event = orders_pb2.OrderPlaced()
                event.ParseFromString(row["payload"])
                await self.bus.publish_fact(row["subject"], event, msg_id=str(row["id"]))
                await conn.execute("UPDATE outbox SET published_at = now() WHERE id = $1", row["id"])
                PUBLISHED.inc()
        return len(rows)
