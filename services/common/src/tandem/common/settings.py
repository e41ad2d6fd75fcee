"""Service settings: one pydantic-settings class per service, env prefix `TANDEM_<SERVICE>_`."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import AnyUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tandem.common.errors import ConfigError
from tandem.common.subjects import ID_CHARS, MAX_ID_CHARS

# Values that become subject tokens (see `tandem.common.subjects.identifier`).
ID_PATTERN = f"^[{ID_CHARS}]*$"

_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})


class ServiceSettings(BaseSettings):
    """What every service needs. Subclasses set `model_config` with their own env prefix."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore", frozen=True)

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="Comma-separated NATS server URLs (nats://host:port).",
    )
    nats_connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    nats_reconnect_wait_s: float = Field(default=1.0, gt=0, le=60)
    nats_max_reconnect_attempts: int = Field(
        default=120, ge=-1, description="Reconnect attempts after a lost connection; -1 is unbounded."
    )
    request_timeout_s: float = Field(default=2.0, gt=0, le=60, description="Default NATS request deadline.")
    max_payload_bytes: int = Field(default=256 * 1024, gt=0, le=8 * 1024 * 1024)

    http_host: str = Field(default="127.0.0.1", description="Address of /healthz, /readyz, /metrics.")
    http_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port.")

    drain_timeout_s: float = Field(default=10.0, gt=0, le=86400, description="Grace period on SIGTERM.")
    instance_id: str = Field(
        default="",
        max_length=MAX_ID_CHARS,
        pattern=ID_PATTERN,
        description="Unique name of this process (a subject token); defaults to service-host-pid.",
    )
    region: str = Field(default="local", min_length=1, max_length=63, pattern=ID_PATTERN)

    log_format: Literal["console", "json"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    otlp_endpoint: str = Field(
        default="", description="OTLP/HTTP traces endpoint (http://collector:4318); empty disables export."
    )

    @field_validator("nats_url")
    @classmethod
    def _valid_nats_urls(cls, value: str) -> str:
        for part in value.split(","):
            url = AnyUrl(part.strip())
            if url.scheme not in _NATS_SCHEMES or not url.host:
                raise ValueError(f"{part.strip()!r} is not a nats:// URL with a host")
        return value

    @property
    def nats_servers(self) -> list[str]:
        return [part.strip() for part in self.nats_url.split(",")]


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment, turning validation errors into one-line `ConfigError`s."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
