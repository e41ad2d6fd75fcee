"""Settings of the media worker (environment variables `TANDEM_MEDIA_*`)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MEDIA_", extra="ignore", frozen=True)

    capacity: int = Field(default=8, ge=1, le=1000, description="Concurrent calls this worker takes.")
    pool: str = Field(default="default", description="The MediaWorkerPool this worker belongs to.")
    pod: str = Field(default="", description="Pod name, set from the downward API in Kubernetes.")
    ice_servers: list[str] = Field(
        default_factory=list,
        description='STUN/TURN URLs as a JSON list, e.g. ["stun:stun.example.com:3478"]; empty: host only.',
    )
    report_interval_s: float = Field(default=2.0, gt=0, le=60, description="Load report period.")
    offer_timeout_s: float = Field(
        default=30.0, gt=0, description="A call whose legs have not both offered by then is released."
    )
    frame_queue: int = Field(default=4, ge=1, le=100, description="Frames buffered per relayed track.")
