"""Settings of the classification service (prefix ``SWITCHBOARD_CLASSIFICATION_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClassificationSettings(BaseSettings):
    """Classifier backend, data and run-time learning."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_CLASSIFICATION_", frozen=True, extra="ignore"
    )

    backend: Literal["tfidf", "embeddings", "hybrid"] = Field(
        default="tfidf", description="Model backend."
    )
    default_top_k: int = Field(default=3, ge=0, le=20, description="Alternatives returned.")
