"""Settings of the orchestration service (prefix ``SWITCHBOARD_ORCHESTRATION_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard_server.secret_files import read_secret_files


class OrchestrationSettings(BaseSettings):
    """Peers, deadlines and reply composition."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_ORCHESTRATION_", frozen=True, extra="ignore"
    )

    peers: Literal["grpc", "in_process"] = Field(
        default="grpc",
        description="How classification and context are reached: `grpc` at the targets "
        "below, or `in_process`: this server also serves both and calls their servicers "
        "directly (one process, no network hop; the single-process deployment).",
    )
    classification_target: str = Field(
        default="127.0.0.1:50051",
        description="Where to reach classification (the sidecar's egress listener in the mesh).",
    )
    context_target: str = Field(
        default="127.0.0.1:50052",
        description="Where to reach context (the sidecar's egress listener in the mesh).",
    )
    store: Literal["sqlite", "redis"] = Field(
        default="sqlite",
        description="Where the conversation log lives: SQLite in the data directory (one "
        "replica), or Redis, shared by every replica (`switchboard up` then runs two).",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL of the conversation log (a secret: it may hold a password).",
    )
    redis_url_file: Path | None = Field(
        default=None, description="A file holding REDIS_URL (a Docker/Kubernetes secret)."
    )
    redis_password: SecretStr = Field(
        default=SecretStr(""), description="Redis password, if not in the URL; empty: none."
    )
    redis_password_file: Path | None = Field(
        default=None, description="A file holding REDIS_PASSWORD."
    )
    redis_key_prefix: str = Field(
        default="switchboard:orchestration:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key the orchestration service writes.",
    )
    redis_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Socket timeout of Redis commands, in seconds."
    )
    deadline_margin_ms: float = Field(
        default=10.0,
        ge=0,
        le=10_000,
        description="Kept back from the incoming deadline for composing and answering; "
        "outbound calls get the remaining time minus this margin.",
    )
    classify_timeout_ms: float = Field(
        default=1000.0, gt=0, le=60_000, description="Longest wait for Classify."
    )
    context_timeout_ms: float = Field(
        default=1000.0, gt=0, le=60_000, description="Longest wait for GetContext."
    )
    memory_timeout_ms: float = Field(
        default=2000.0, gt=0, le=60_000, description="Longest wait for AppendMemory."
    )
    commit_reserve_ms: float = Field(
        default=50.0,
        ge=0,
        le=60_000,
        description="A turn is written (log and memory) only if at least this much of the "
        "caller's deadline is left to write it and answer; else it fails with "
        "DEADLINE_EXCEEDED and writes nothing.",
    )
    max_context_results: int = Field(
        default=5, ge=1, le=50, description="Context sources retrieved when the request says 0."
    )
    max_context_chars: int = Field(
        default=2000, ge=0, le=65536, description="Size budget asked of GetContext (0: default)."
    )
    alternatives_offered: int = Field(
        default=3, ge=0, le=20, description="Alternatives asked of Classify and offered when OOS."
    )
    fallback_intent: str = Field(
        default="general/fallback",
        description="Intent reported when classification is unavailable.",
    )
    min_citation_relevance: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Least relevance of a knowledge passage the default composer cites.",
    )
    reply_chunk_chars: int = Field(
        default=48, ge=1, le=4096, description="Target size of ChatStream reply chunks."
    )
    conversation_page_size: int = Field(
        default=20, ge=1, le=100, description="GetConversation page size when the request says 0."
    )
    composer: Literal["rules", "llm"] = Field(
        default="rules",
        description="Reply composer: intent-aware rules, or an OpenAI-compatible LLM "
        "(falls back to rules, flagged degraded, when the LLM fails).",
    )
    llm_base_url: str = Field(
        default="http://127.0.0.1:11434/v1",
        description="Base URL of the OpenAI-compatible API (POST {base}/chat/completions).",
    )
    llm_model: str = Field(default="gpt-4o-mini", description="Model name sent to the LLM API.")
    llm_api_key: SecretStr = Field(
        default=SecretStr(""), description="Bearer key for the LLM API; empty: none."
    )
    llm_api_key_file: Path | None = Field(
        default=None, description="A file holding LLM_API_KEY (a Docker/Kubernetes secret)."
    )
    llm_timeout_ms: float = Field(
        default=5000.0, gt=0, le=120_000, description="Longest wait for the LLM API."
    )
    llm_breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive LLM failures that open its circuit breaker (turns then use "
        "the rule composer at once, flagged degraded `CIRCUIT_OPEN`).",
    )
    llm_breaker_cooldown_ms: float = Field(
        default=30_000.0,
        ge=0,
        le=3_600_000,
        description="How long the LLM breaker stays open before one probe call is let through.",
    )
    compose_reserve_ms: float = Field(
        default=100.0,
        ge=0,
        le=10_000,
        description="Kept back from the caller's remaining deadline when composing, for "
        "remembering and answering: the LLM waits at most the rest (or llm_timeout_ms).",
    )
    llm_max_tokens: int = Field(
        default=256, ge=1, le=32_768, description="max_tokens sent to the LLM API."
    )
    llm_temperature: float = Field(
        default=0.2, ge=0, le=2, description="temperature sent to the LLM API."
    )

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, values: Any) -> Any:
        return read_secret_files(values, ("llm_api_key", "redis_url", "redis_password"))
