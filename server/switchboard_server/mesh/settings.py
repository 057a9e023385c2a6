"""Settings of the local mesh runner (prefix ``SWITCHBOARD_MESH_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MeshSettings(BaseSettings):
    """Ports and policies of ``switchboard up``."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_MESH_", frozen=True, extra="ignore")

    edge_port: int = Field(default=8080, ge=1, le=65535, description="Edge Envoy gRPC port.")
    edge_admin_port: int = Field(
        default=9901, ge=1, le=65535, description="Edge Envoy admin port."
    )
