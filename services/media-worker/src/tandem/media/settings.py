"""Settings of the media worker (environment variables `TANDEM_MEDIA_*`)."""

from aiortc import RTCConfiguration, RTCIceServer
from pydantic import Field, SecretStr, model_validator
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
    ice_username: str = Field(default="", description="Username for the turn:/turns: servers (long-term credentials).")
    ice_credential: SecretStr = Field(default=SecretStr(""), description="Password for the turn:/turns: servers.")
    report_interval_s: float = Field(default=2.0, gt=0, le=60, description="Load report period.")
    offer_timeout_s: float = Field(
        default=30.0, gt=0, description="A call whose legs have not both offered by then is released."
    )
    frame_queue: int = Field(default=4, ge=1, le=100, description="Frames buffered per relayed track.")
    quality_interval_s: float = Field(
        default=5.0, ge=0.2, le=300, description="Period of the call-quality facts, per leg and direction."
    )
    quality_talk_threshold_dbfs: float = Field(
        default=-50.0, ge=-120, le=0, description="A received audio frame this loud (RMS, dBFS) counts as talk."
    )
    quality_jitter_buffer_ms: float = Field(
        default=40.0, ge=0, le=1000, description="Least jitter-buffer delay the E-model assumes, ms."
    )
    quality_summary_attempts: int = Field(
        default=5, ge=1, le=100, description="Tries to publish a call's quality summary before giving up."
    )

    @model_validator(mode="after")
    def _credentials_go_with_turn(self) -> "Settings":
        has_turn = any(url.startswith(("turn:", "turns:")) for url in self.ice_servers)
        has_credential = bool(self.ice_credential.get_secret_value())
        if bool(self.ice_username) != has_credential:
            raise ValueError("TANDEM_MEDIA_ICE_USERNAME and TANDEM_MEDIA_ICE_CREDENTIAL go together")
        if has_credential and not has_turn:
            raise ValueError("TANDEM_MEDIA_ICE_CREDENTIAL is set but TANDEM_MEDIA_ICE_SERVERS lists no turn: server")
        return self

    def rtc_configuration(self) -> RTCConfiguration:
        """aiortc's configuration: every STUN/TURN server explicitly (never aiortc's public default),
        the credentials on the TURN ones."""
        username = self.ice_username or None
        credential = self.ice_credential.get_secret_value() or None
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=url, username=username, credential=credential)
                if url.startswith(("turn:", "turns:"))
                else RTCIceServer(urls=url)
                for url in self.ice_servers
            ]
        )
