"""Settings of the orders service (environment variables `TANDEM_ORDERS_*`)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_ORDERS_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/tandem", description="PostgreSQL DSN (asyncpg)."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_statement_timeout_ms: int = Field(default=5000, ge=10, description="Per statement.")
    db_connect_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Opening a connection, and the readiness probe's deadline."
    )
    db_probe_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often /readyz's database check runs SELECT 1."
    )
    db_retry_after_s: int = Field(
        default=1, ge=1, le=60, description="The retry_after_s answered while the database is unavailable."
    )
    outbox_poll_interval_s: float = Field(default=1.0, gt=0, le=60, description="Relay sweep period.")
    outbox_batch: int = Field(default=100, ge=1, le=10000)
    consumer_ack_wait_s: float = Field(
        default=10.0,
        ge=1,
        le=300,
        description="A fact from a stream delivered but not acked (lost with a connection or a "
        "process) is redelivered after this long.",
    )
    idempotency_lock_timeout_ms: int = Field(
        default=200,
        ge=1,
        description="Wait for a concurrent request with the same key before answering 'in flight'.",
    )
    max_quantity: int = Field(default=99, ge=1, description="Largest quantity of one line in a cart.")
    max_cart_lines: int = Field(default=50, ge=1)
