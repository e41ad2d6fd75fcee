"""Product cards, carts and idempotent checkout over PostgreSQL.

Checkout follows Stripe's idempotency rules: the first response for a (shopper, key) is stored in
the same transaction as the order and the outbox row, and replayed, errors included; the same key
with different parameters (another call, another host, a cart changed since) is an error; a key
whose first request is still running answers "in flight".
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

from tandem.common import subjects
from tandem.orders.catalog import currency_for_market
from tandem.orders.errors import (
    MAX_IDEMPOTENCY_KEY_CHARS,
    CartFullError,
    CheckoutInFlightError,
    EmptyCartError,
    IdempotencyKeyLengthError,
    IdempotencyKeyReusedError,
    ProductNotPricedError,
    QuantityOverLimitError,
)
from tandem.v1 import common_pb2, orders_pb2

if TYPE_CHECKING:
    from tandem.orders.schema import Connection


class Commerce:
    def __init__(self, pool: asyncpg.Pool, *, lock_timeout_ms: int, max_quantity: int, max_lines: int) -> None:
        self.pool = pool
        self.lock_timeout_ms = lock_timeout_ms
        self.max_quantity = max_quantity
        self.max_lines = max_lines

    async def product_card(self, request: orders_pb2.ProductCardRequest) -> orders_pb2.ProductCardReply:
        currency = currency_for_market(request.market)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT p.product_id, p.title, p.category, p.image_url, pp.amount_minor
                   FROM products p JOIN product_prices pp USING (product_id)
                   WHERE p.product_id = $1 AND pp.currency = $2""",
                request.product_id,
                currency,
            )
            if row is None:
                raise ProductNotPricedError(request.product_id, currency)
            card_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO product_cards (card_id, call_id, host_id, product_id) VALUES ($1, $2, $3, $4)",
                card_id, request.call_id, request.host_id, request.product_id,
            )  # fmt: skip
        return orders_pb2.ProductCardReply(
            card_id=str(card_id),
            product=common_pb2.Product(
                product_id=row["product_id"],
                title=row["title"],
                category=row["category"],
                image_url=row["image_url"],
                price=common_pb2.Money(amount_minor=row["amount_minor"], currency=currency),
            ),
        )

    async def change_cart(self, change: orders_pb2.CartChange) -> orders_pb2.CartReply:
        if change.quantity > self.max_quantity:
            raise QuantityOverLimitError(change.quantity, self.max_quantity)
        currency = currency_for_market(change.market)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO cart_revisions (call_id, revision) VALUES ($1, 1)
                   ON CONFLICT (call_id) DO UPDATE SET revision = cart_revisions.revision + 1""",
                change.call_id,
            )
            if change.quantity == 0:
                await conn.execute(
                    "DELETE FROM cart_lines WHERE call_id = $1 AND product_id = $2",
                    change.call_id,
                    change.product_id,
                )
            else:
                price = await conn.fetchval(
                    "SELECT amount_minor FROM product_prices WHERE product_id = $1 AND currency = $2",
                    change.product_id,
                    currency,
                )
                if price is None:
                    raise ProductNotPricedError(change.product_id, currency)
                lines = await conn.fetchval("SELECT count(*) FROM cart_lines WHERE call_id = $1", change.call_id)
                if lines >= self.max_lines:
                    raise CartFullError(self.max_lines)
                await conn.execute(
                    """INSERT INTO cart_lines (call_id, product_id, quantity, unit_amount_minor, currency)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (call_id, product_id) DO UPDATE SET quantity = $3""",
                    change.call_id, change.product_id, change.quantity, price, currency,
                )  # fmt: skip
            return await self._cart(conn, change.call_id)

    async def _cart(self, conn: Connection, call_id: str) -> orders_pb2.CartReply:
        rows = await conn.fetch(
            """SELECT product_id, quantity, unit_amount_minor, currency FROM cart_lines
               WHERE call_id = $1 ORDER BY product_id""",
            call_id,
        )
        reply = orders_pb2.CartReply()
        for row in rows:
            reply.lines.add(
                product_id=row["product_id"],
                quantity=row["quantity"],
                unit_price=common_pb2.Money(amount_minor=row["unit_amount_minor"], currency=row["currency"]),
            )
        if rows:
            total = sum(r["quantity"] * r["unit_amount_minor"] for r in rows)
            reply.total.CopyFrom(common_pb2.Money(amount_minor=total, currency=rows[0]["currency"]))
        return reply

    async def checkout(self, request: orders_pb2.CheckoutRequest) -> orders_pb2.CheckoutReply:
        """Place the call's cart as an order, exactly once per (shopper, idempotency key)."""
        if not 0 < len(request.idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
            raise IdempotencyKeyLengthError(len(request.idempotency_key))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
            # The fingerprint covers the cart as the shopper sees it: the same key for a changed cart
            # is a different purchase. Locking the revision keeps the cart still until the order is placed.
            revision = await conn.fetchval(
                "SELECT revision FROM cart_revisions WHERE call_id = $1 FOR UPDATE", request.call_id
            )
            fingerprint = f"{request.call_id}\x00{request.host_id}\x00{revision or 0}"
            request_hash = hashlib.sha256(fingerprint.encode()).hexdigest()
            try:
                inserted = await conn.fetchval(
                    """INSERT INTO idempotency_keys (shopper_id, key, request_hash, response)
                       VALUES ($1, $2, $3, '') ON CONFLICT DO NOTHING RETURNING true""",
                    request.shopper_id, request.idempotency_key, request_hash,
                )  # fmt: skip
            except asyncpg.LockNotAvailableError:
                raise CheckoutInFlightError(request.shopper_id) from None
            if not inserted:
                return await self._replay(conn, request, request_hash)
            reply = await self._place_order(conn, request)
            await conn.execute(
                "UPDATE idempotency_keys SET response = $3 WHERE shopper_id = $1 AND key = $2",
                request.shopper_id, request.idempotency_key, reply.SerializeToString(),
            )  # fmt: skip
        return reply

    async def _replay(
        self, conn: Connection, request: orders_pb2.CheckoutRequest, request_hash: str
    ) -> orders_pb2.CheckoutReply:
        row = await conn.fetchrow(
            "SELECT request_hash, response FROM idempotency_keys WHERE shopper_id = $1 AND key = $2",
            request.shopper_id,
            request.idempotency_key,
        )
        assert row is not None
        if row["request_hash"] != request_hash:
            raise IdempotencyKeyReusedError(request.shopper_id)
        reply = orders_pb2.CheckoutReply()
        reply.ParseFromString(row["response"])
        return reply

    async def _place_order(self, conn: Connection, request: orders_pb2.CheckoutRequest) -> orders_pb2.CheckoutReply:
        cart = await self._cart(conn, request.call_id)
        if not cart.lines:
            return orders_pb2.CheckoutReply(error=EmptyCartError(request.call_id).to_proto())
        order_id = uuid.uuid4()
        placed_at = datetime.now(UTC)
        await conn.execute(
            """INSERT INTO orders (order_id, call_id, shopper_id, host_id, currency, total_minor, placed_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            order_id, request.call_id, request.shopper_id, request.host_id, cart.total.currency,
            cart.total.amount_minor, placed_at,
        )  # fmt: skip
        await conn.executemany(
            """INSERT INTO order_lines (order_id, product_id, quantity, unit_amount_minor)
               VALUES ($1, $2, $3, $4)""",
            [(order_id, line.product_id, line.quantity, line.unit_price.amount_minor) for line in cart.lines],
        )
        await conn.execute("DELETE FROM cart_lines WHERE call_id = $1", request.call_id)
        event = orders_pb2.OrderPlaced(
            order_id=str(order_id),
            call_id=request.call_id,
            shopper_id=request.shopper_id,
            host_id=request.host_id,
            lines=cart.lines,
            total=cart.total,
        )
        event.placed_at.FromDatetime(placed_at)
        await conn.execute(
            "INSERT INTO outbox (id, subject, payload) VALUES ($1, $2, $3)",
            uuid.uuid4(), subjects.join(subjects.ORDER_EVENTS, str(order_id)), event.SerializeToString(),
        )  # fmt: skip
        return orders_pb2.CheckoutReply(order_id=str(order_id), total=cart.total)
