"""Settings of the orders service (environment variables `TANDEM_ORDERS_*`)."""

from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_ORDERS_", extra="ignore", frozen=True)
