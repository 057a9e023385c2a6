"""Settings of logging, metrics and tracing (prefix ``SWITCHBOARD_OBS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ObservabilitySettings(BaseSettings):
    """Metrics port and trace export."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_OBS_", frozen=True, extra="ignore")

    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Prometheus /metrics port; unset disables the endpoint, 0 picks a free port.",
    )
    otlp_endpoint: str = Field(
        default="", description="OTLP/gRPC trace endpoint (host:port); empty turns export off."
    )
