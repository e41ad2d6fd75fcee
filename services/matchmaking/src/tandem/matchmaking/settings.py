"""Settings of the matchmaking service (environment variables `TANDEM_MATCHMAKING_*`)."""

from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MATCHMAKING_", extra="ignore", frozen=True)
