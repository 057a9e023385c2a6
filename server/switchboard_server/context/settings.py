"""Settings of the context service (prefix ``SWITCHBOARD_CONTEXT_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ContextSettings(BaseSettings):
    """Memory caps, storage backend, ranking and cache."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_CONTEXT_", frozen=True, extra="ignore")

    store: Literal["sqlite", "redis"] = Field(default="sqlite", description="Storage backend.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL.")
