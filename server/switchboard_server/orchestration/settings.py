"""Settings of the orchestration service (prefix ``SWITCHBOARD_ORCHESTRATION_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrchestrationSettings(BaseSettings):
    """Peers, deadlines and reply composition."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_ORCHESTRATION_", frozen=True, extra="ignore"
    )

    classification_target: str = Field(
        default="127.0.0.1:50051",
        description="Where to reach classification (the sidecar's egress listener in the mesh).",
    )
    context_target: str = Field(
        default="127.0.0.1:50052",
        description="Where to reach context (the sidecar's egress listener in the mesh).",
    )
