"""Orders on the bus: commerce requests, consultations from call facts, call quality from the
media workers' summaries, and the outbox relay."""

from __future__ import annotations

import asyncpg

from tandem.common import subjects
from tandem.common.aio import TaskSet
from tandem.common.bus import Bus
from tandem.common.http import HttpServer
from tandem.common.service import BaseApp
from tandem.orders.commerce import Commerce
from tandem.orders.consultations import record_call_event
from tandem.orders.database import Database
from tandem.orders.outbox import OutboxRelay
from tandem.orders.quality import record_quality_summary
from tandem.orders.schema import apply_schema
from tandem.orders.settings import Settings
from tandem.v1 import calls_pb2, orders_pb2, quality_pb2


class OrdersApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance
        self.tasks = TaskSet("orders")
        self.database: Database | None = None

    @property
    def pool(self) -> asyncpg.Pool | None:
        """The database pool once started (tests)."""
        return self.database.pool if self.database is not None else None

    async def start(self, bus: Bus, http: HttpServer) -> None:
        s = self.settings
        database = self.database = await Database.open(s)
        pool = database.pool
        async with pool.acquire() as conn:
            await apply_schema(conn)
        http.add_check("database", lambda: database.reachable)
        self.tasks.spawn(database.watch(), name="database-probe")
        for stream in subjects.STREAMS:
            await bus.ensure_stream(stream)
        commerce = Commerce(
            pool, lock_timeout_ms=s.idempotency_lock_timeout_ms, max_quantity=s.max_quantity,
            max_lines=s.max_cart_lines,
        )  # fmt: skip
        relay = OutboxRelay(pool, bus, poll_interval_s=s.outbox_poll_interval_s, batch=s.outbox_batch)

        async def checkout(request: orders_pb2.CheckoutRequest) -> orders_pb2.CheckoutReply:
            reply = await commerce.checkout(request)
            relay.wake.set()
            return reply

        async def on_call_event(event: calls_pb2.CallEvent) -> None:
            await record_call_event(pool, event)

        async def on_quality_summary(summary: quality_pb2.MediaQualitySummary) -> None:
            await record_quality_summary(pool, summary)

        # A lost database answers UNAVAILABLE with retry_after_s; the consumer retries such a fact in place.
        guarded = database.guarded
        await bus.serve(
            subjects.ORDERS_PRODUCT_CARD, orders_pb2.ProductCardRequest, guarded(commerce.product_card), queue="orders"
        )
        await bus.serve(subjects.ORDERS_CART, orders_pb2.CartChange, guarded(commerce.change_cart), queue="orders")
        await bus.serve(subjects.ORDERS_CHECKOUT, orders_pb2.CheckoutRequest, guarded(checkout), queue="orders")
        bus.consume(
            subjects.CALLS_STREAM,
            "orders-consultations",
            calls_pb2.CallEvent,
            guarded(on_call_event),
            ack_wait_s=s.consumer_ack_wait_s,
        )
        bus.consume(
            subjects.QUALITY_STREAM, "orders-call-quality", quality_pb2.MediaQualitySummary,
            guarded(on_quality_summary), filter_subject=f"{subjects.QUALITY_SUMMARIES}.>",
            ack_wait_s=s.consumer_ack_wait_s,
        )  # fmt: skip
        self.tasks.spawn(relay.run(), name="outbox-relay")

    async def stop(self) -> None:
        await self.tasks.cancel_all()

    async def close(self) -> None:
        if self.database is not None:
            await self.database.close()


def build_app(settings: Settings, instance: str) -> OrdersApp:
    return OrdersApp(settings, instance)
