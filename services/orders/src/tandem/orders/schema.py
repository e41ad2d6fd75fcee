"""The orders database schema, applied idempotently at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from tandem.orders.catalog import DEMO_CATALOG

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection or one borrowed from a pool (asyncpg's classes are generic only in stubs).
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    product_id text PRIMARY KEY,
    title      text NOT NULL,
    category   text NOT NULL,
    image_url  text NOT NULL
);
CREATE TABLE IF NOT EXISTS product_prices (
    product_id   text NOT NULL REFERENCES products,
    currency     char(3) NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    PRIMARY KEY (product_id, currency)
);
CREATE TABLE IF NOT EXISTS consultations (
    call_id      text PRIMARY KEY,
    shopper_id   text NOT NULL,
    host_id      text NOT NULL DEFAULT '',
    product_id   text NOT NULL DEFAULT '',
    category     text NOT NULL DEFAULT '',
    language     text NOT NULL DEFAULT '',
    market       text NOT NULL DEFAULT '',
    state        text NOT NULL,
    end_reason   text NOT NULL DEFAULT '',
    requested_at timestamptz,
    ringing_at   timestamptz,
    connected_at timestamptz,
    ended_at     timestamptz,
    updated_at   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS product_cards (
    card_id    uuid PRIMARY KEY,
    call_id    text NOT NULL,
    host_id    text NOT NULL,
    product_id text NOT NULL REFERENCES products,
    shown_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cart_lines (
    call_id            text NOT NULL,
    product_id         text NOT NULL REFERENCES products,
    quantity           integer NOT NULL CHECK (quantity > 0),
    unit_amount_minor  bigint NOT NULL,
    currency           char(3) NOT NULL,
    PRIMARY KEY (call_id, product_id)
);
-- Bumped by every change of a call's cart: a checkout's fingerprint covers what is being bought.
CREATE TABLE IF NOT EXISTS cart_revisions (
    call_id  text PRIMARY KEY,
    revision bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id     uuid PRIMARY KEY,
    call_id      text NOT NULL,
    shopper_id   text NOT NULL,
    host_id      text NOT NULL,
    currency     char(3) NOT NULL,
    total_minor  bigint NOT NULL,
    placed_at    timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id          uuid NOT NULL REFERENCES orders,
    product_id        text NOT NULL,
    quantity          integer NOT NULL,
    unit_amount_minor bigint NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    shopper_id   text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shopper_id, key)
);
CREATE TABLE IF NOT EXISTS outbox (
    id           uuid PRIMARY KEY,
    subject      text NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;
-- One row per call, media worker, leg and direction; audio_* / video_* NULL when that leg carried none.
-- Loss as a fraction 0..1, times in ms or s as named; "inbound" is what the party sent the worker.
CREATE TABLE IF NOT EXISTS call_quality (
    call_id         text NOT NULL,
    worker_id       text NOT NULL,
    leg             text NOT NULL,
    direction       text NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL,
    windows         integer NOT NULL,
    rtt_ms          double precision NOT NULL,
    rtt_max_ms      double precision NOT NULL,
    audio_loss      double precision,
    audio_loss_max  double precision,
    audio_jitter_ms double precision,
    mos             double precision,
    mos_min         double precision,
    audio_gaps      integer,
    audio_gap_s     double precision,
    talk_time_s     double precision,
    video_loss      double precision,
    video_loss_max  double precision,
    video_jitter_ms double precision,
    frame_rate      double precision,
    width           integer,
    height          integer,
    freezes         integer,
    freeze_s        double precision,
    video_nacks     integer,
    video_plis      integer,
    PRIMARY KEY (call_id, worker_id, leg, direction)
);
-- Per consultation: its worst quality beside whether it converted.
CREATE OR REPLACE VIEW consultation_quality AS
SELECT c.call_id, c.host_id, c.market, c.category, c.end_reason, c.connected_at, c.ended_at,
       min(q.mos_min) AS mos_min,
       max(q.audio_loss_max) AS audio_loss_max,
       max(q.rtt_max_ms) AS rtt_max_ms,
       coalesce(sum(q.freezes) FILTER (WHERE q.direction = 'DIRECTION_INBOUND'), 0) AS freezes,
       coalesce(sum(q.freeze_s) FILTER (WHERE q.direction = 'DIRECTION_INBOUND'), 0) AS freeze_s,
       count(q.call_id) > 0 AS measured,
       EXISTS (SELECT 1 FROM orders o WHERE o.call_id = c.call_id) AS converted
FROM consultations c LEFT JOIN call_quality q ON q.call_id = c.call_id
GROUP BY c.call_id;
"""


async def apply_schema(conn: Connection) -> None:
    """Create tables and load the demo catalog; safe to run from every replica at every start."""
    async with conn.transaction():
        # One replica at a time, so concurrent starts don't race on CREATE.
        await conn.execute("SELECT pg_advisory_xact_lock(7263)")
        await conn.execute(SCHEMA)
        for product in DEMO_CATALOG:
            await conn.execute(
                """INSERT INTO products (product_id, title, category, image_url) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (product_id) DO UPDATE SET title = $2, category = $3, image_url = $4""",
                product.product_id, product.title, product.category, product.image_url,
            )  # fmt: skip
            await conn.executemany(
                """INSERT INTO product_prices (product_id, currency, amount_minor) VALUES ($1, $2, $3)
                   ON CONFLICT (product_id, currency) DO UPDATE SET amount_minor = $3""",
                [(product.product_id, cur, amount) for cur, amount in product.prices.items()],
            )
