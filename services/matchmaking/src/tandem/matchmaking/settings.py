"""Settings of the matchmaking service (environment variables `TANDEM_MATCHMAKING_*`)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MATCHMAKING_", extra="ignore", frozen=True)

    weight_category: float = Field(default=40.0, ge=0, description="Points for a host in the category.")
    weight_returning_customer: float = Field(default=100.0, ge=0, description="Points for a previous seller.")
    weight_idle_per_minute: float = Field(default=1.0, ge=0, description="Points per idle minute.")
    idle_cap_minutes: float = Field(default=30.0, ge=0)
    max_reserve_attempts: int = Field(
        default=5, ge=1, le=100, description="Candidates tried when another replica reserves a host first."
    )
