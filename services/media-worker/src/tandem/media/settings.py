"""Settings of the media-worker service (environment variables `TANDEM_MEDIA_*`)."""

from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MEDIA_", extra="ignore", frozen=True)
