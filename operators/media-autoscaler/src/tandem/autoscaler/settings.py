"""The operator's settings, from `TANDEM_AUTOSCALER_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_AUTOSCALER_", extra="ignore", frozen=True)

    namespace: str = Field(default="default", min_length=1, description="The namespace whose pools it scales.")
    kube_api_url: str = Field(
        default="", description="Kubernetes API URL without credentials (kubectl proxy); empty: in-cluster."
    )
    capacity_stale_after_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Other regions' capacity reports older than this are ignored.",
    )
    liveness_port: int = Field(default=8080, ge=0, le=65535, description="kopf's /healthz; 0 disables it.")
