"""How to reach a Switchboard service: :class:`ConnectConfig`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TARGET = "127.0.0.1:8080"
"""The local mesh's edge Envoy."""
TARGET_ENV = "SWITCHBOARD_TARGET"
TIMEOUT_ENV = "SWITCHBOARD_TIMEOUT_S"


@dataclass(frozen=True, slots=True)
class ConnectConfig:
    """Where and how a client connects; every call gets ``timeout_s`` unless overridden."""

    target: str = DEFAULT_TARGET
    timeout_s: float = 10.0
    metadata: tuple[tuple[str, str], ...] = ()
    max_message_bytes: int = 8 * 1024 * 1024
    wait_for_ready: bool = False
    channel_options: tuple[tuple[str, int | str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("ConnectConfig.target must not be empty")
        if not self.timeout_s > 0:
            raise ValueError("ConnectConfig.timeout_s must be positive")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> ConnectConfig:
        """Defaults, then ``SWITCHBOARD_TARGET`` / ``SWITCHBOARD_TIMEOUT_S``, then overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get(TARGET_ENV):
            values["target"] = env[TARGET_ENV]
        if env.get(TIMEOUT_ENV):
            try:
                values["timeout_s"] = float(env[TIMEOUT_ENV])
            except ValueError as exc:
                raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
