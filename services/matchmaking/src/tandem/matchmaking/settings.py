"""Settings of the matchmaking service (environment variables `TANDEM_MATCHMAKING_*`)."""

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MATCHMAKING_", extra="ignore", frozen=True)

    weight_category: float = Field(default=40.0, ge=0, description="Points for a host in the category.")
    weight_returning_customer: float = Field(default=100.0, ge=0, description="Points for a previous seller.")
    weight_idle_per_minute: float = Field(default=1.0, ge=0, description="Points per idle minute.")
    idle_cap_minutes: float = Field(default=30.0, ge=0)
    aging_per_second: float = Field(
        default=5.0, gt=0, description="Priority points a waiting shopper gains per second of waiting."
    )
    previous_host_ring_s: float = Field(
        default=10.0, ge=0, description="Waiting time during which only a host the shopper bought from is offered."
    )
    category_ring_s: float = Field(
        default=20.0, ge=0, description="Waiting time until which only hosts skilled in the category are offered."
    )

    batch_window_ms: float = Field(default=30.0, gt=0, le=1000, description="Requests collected before a batch.")
    batch_flush_size: int = Field(default=256, ge=1, description="New requests that flush a batch early.")
    solver_max_work: int = Field(
        default=25_000_000,
        ge=0,
        description="A batch whose smaller side squared times its larger (shoppers, hosts) is above this is "
        "assigned greedily: about 15 ms of the solver per batch.",
    )
    max_queue: int = Field(default=20_000, ge=1, description="Waiting shoppers per shard; more are refused.")
    queue_lapse_s: float = Field(
        default=3.0, gt=0, description="A queued shopper who has not asked again for this long leaves the queue."
    )
    queue_update_interval_s: float = Field(
        default=1.0, ge=0, description="Shortest time between two queue updates to one shopper."
    )
    service_rate_window_s: float = Field(
        default=60.0, gt=0, description="Matches counted for a queue's service rate (estimated wait)."
    )
    max_availability_items: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Languages, categories or markets in one host's availability; an update with more is refused "
        "(keep it no lower than signaling's MAX_AVAILABILITY_ITEMS).",
    )
    pause_after_misses: int = Field(
        default=3, ge=1, description="Calls in a row a host declines or lets ring out before being paused."
    )

    hold_audit_s: float = Field(
        default=60.0,
        gt=0,
        description="Period of the audit of hosts' holds: a host held this long for a call that is over, or "
        "has another host, in two audits in a row is released (its release was lost). Longer than a ring.",
    )

    lease_ttl_s: float = Field(default=1.0, gt=0, le=30, description="A shard's lease lapses this long after renewal.")
    lease_renew_s: float = Field(default=0.25, gt=0, le=10, description="Lease renewal and takeover check period.")

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> "Settings":
        if self.lease_renew_s * 2 > self.lease_ttl_s:
            raise ValueError("TANDEM_MATCHMAKING_LEASE_RENEW_S must be at most half of LEASE_TTL_S")
        return self
