"""Settings: read from the environment once, validated, frozen.

Every tunable number is a setting with a default and an environment variable.
Each part of the system owns a settings class with its own prefix:

=========================  ===================================  ==========================
part                       class                                 prefix
=========================  ===================================  ==========================
core (every server)        ``CoreSettings``                     ``SWITCHBOARD_``
classification             ``ClassificationSettings``           ``SWITCHBOARD_CLASSIFICATION_``
context                    ``ContextSettings``                  ``SWITCHBOARD_CONTEXT_``
orchestration              ``OrchestrationSettings``            ``SWITCHBOARD_ORCHESTRATION_``
observability              ``ObservabilitySettings``            ``SWITCHBOARD_OBS_``
mesh (``switchboard up``)  ``MeshSettings``                     ``SWITCHBOARD_MESH_``
deployments (render)       ``DeploySettings``                   ``SWITCHBOARD_DEPLOY_``
=========================  ===================================  ==========================

``load_settings()`` is the one place that reads the environment; a bad value
raises ``ConfigError`` naming the variable (``__main__`` exits with code 2).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.context.settings import ContextSettings
from switchboard_server.deploy.settings import DeploySettings
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.orchestration.settings import OrchestrationSettings


class ServiceName(StrEnum):
    """The services one process can run."""

    CLASSIFICATION = "classification"
    CONTEXT = "context"
    ORCHESTRATION = "orchestration"


DEFAULT_PORTS: dict[ServiceName, int] = {
    ServiceName.CLASSIFICATION: 50051,
    ServiceName.CONTEXT: 50052,
    ServiceName.ORCHESTRATION: 50053,
}


class CoreSettings(BaseSettings):
    """Settings every server shares (prefix ``SWITCHBOARD_``)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", frozen=True, extra="ignore")

    data_dir: Path = Field(
        default=Path(".switchboard/data"),
        description="Directory for durable state; each service uses a subdirectory.",
    )
    host: str = Field(default="127.0.0.1", description="Address the gRPC server binds.")
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="gRPC port; default 50051/50052/50053 by service; 0 picks a free port.",
    )
    grace_period_s: float = Field(
        default=5.0, ge=0, le=300, description="Seconds in-flight RPCs get to finish on SIGTERM."
    )
    drain_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="On SIGTERM, seconds the server goes on taking new RPCs while its health "
        "answers NOT_SERVING, so callers' health checks route away before it stops (the "
        "mesh sets it from its health-check interval); then the grace period.",
    )
    max_text_bytes: int = Field(
        default=4096, ge=16, le=1_048_576, description="Largest accepted user text, in bytes."
    )
    max_batch_items: int = Field(
        default=256, ge=1, le=10_000, description="Most items accepted in one batch request."
    )
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=4096,
        description="Largest gRPC message the server accepts or sends.",
    )
    max_metadata_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request metadata (headers, as HTTP/2 counts them) a server reads; "
        "more is answered RESOURCE_EXHAUSTED, reason METADATA_TOO_LARGE.",
    )
    max_concurrent_rpcs: int | None = Field(
        default=None, ge=1, description="Cap on concurrent RPCs per server; unset means no cap."
    )
    request_retention_s: float = Field(
        default=86_400.0,
        ge=1.0,
        le=30 * 86_400.0,
        description="How long a write's outcome is kept under its request_id (idempotency "
        "key); a repeat within this window returns the first outcome.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="json, console, or auto (console on a TTY, else json)."
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="Event loop a server runs on: uvloop (libuv; less CPU per RPC) or "
        "asyncio (the standard library's).",
    )

    def port_for(self, service: ServiceName) -> int:
        return DEFAULT_PORTS[service] if self.port is None else self.port

    def data_dir_for(self, service: ServiceName) -> Path:
        return self.data_dir / service.value


@dataclass(frozen=True)
class Settings:
    """All settings of a process, grouped by part."""

    core: CoreSettings = field(default_factory=CoreSettings)
    classification: ClassificationSettings = field(default_factory=ClassificationSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    orchestration: OrchestrationSettings = field(default_factory=OrchestrationSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    mesh: MeshSettings = field(default_factory=MeshSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)


class ConfigError(Exception):
    """A setting has a bad value; the message names the environment variable."""


_PARTS: dict[str, type[BaseSettings]] = {
    "core": CoreSettings,
    "classification": ClassificationSettings,
    "context": ContextSettings,
    "orchestration": OrchestrationSettings,
    "observability": ObservabilitySettings,
    "mesh": MeshSettings,
    "deploy": DeploySettings,
}


def _is_secret(cls: type[BaseSettings], loc: tuple[int | str, ...]) -> bool:
    """Whether an error at ``loc`` may be about a secret, whose value is never echoed:
    a ``SecretStr`` field, or the whole input (a model-level validator's error)."""
    field = cls.model_fields.get(str(loc[0])) if loc else None
    if field is None:
        return True
    return "SecretStr" in str(field.annotation)


def load_settings() -> Settings:
    """Read and validate every setting from the environment (the only place that does)."""
    parts: dict[str, BaseSettings] = {}
    problems: list[str] = []
    for name, cls in _PARTS.items():
        try:
            parts[name] = cls()
        except ValidationError as exc:
            prefix = str(cls.model_config.get("env_prefix", ""))
            for error in exc.errors():
                loc = "_".join(str(p) for p in error["loc"]).upper()
                got = "" if _is_secret(cls, error["loc"]) else f" (got {error.get('input')!r})"
                name = f"{prefix}{loc}" if loc else prefix.rstrip("_")
                problems.append(f"{name}: {error['msg']}{got}")
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    return Settings(**parts)  # type: ignore[arg-type]


def load_settings_or_report(prog: str) -> Settings | None:
    """``load_settings()`` for a command: None after printing ``prog: <problems>`` on
    stderr, so the command can exit with its configuration-error code."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for docs and ``--help``."""
    rows = []
    for cls in _PARTS.values():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True)
            rows.append((f"{prefix}{name.upper()}", repr(default), info.description or ""))
    return rows
