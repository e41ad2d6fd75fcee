"""Settings of the signaling service (environment variables `TANDEM_SIGNALING_*`)."""

from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_SIGNALING_", extra="ignore", frozen=True)
