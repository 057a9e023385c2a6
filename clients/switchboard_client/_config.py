"""How to reach a Switchboard service: :class:`ConnectConfig`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TARGET = "127.0.0.1:8080"
"""The local mesh's edge Envoy."""
TARGET_ENV = "SWITCHBOARD_TARGET"
TIMEOUT_ENV = "SWITCHBOARD_TIMEOUT_S"
TOKEN_ENV = "SWITCHBOARD_TOKEN"
TOKEN_FILE_ENV = "SWITCHBOARD_TOKEN_FILE"
TLS_CA_FILE_ENV = "SWITCHBOARD_TLS_CA_FILE"
DATA_DIR_ENV = "SWITCHBOARD_DATA_DIR"
DEFAULT_DATA_DIR = Path(".switchboard/data")
"""The servers' default ``SWITCHBOARD_DATA_DIR`` (a test keeps the two equal)."""
DEV_TOKEN_RELPATH = Path("mesh/auth/dev-token")
"""Where ``switchboard up`` writes its development token, under the data directory."""


def _read_token(path: Path) -> str:
    return path.read_text().strip()


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def is_loopback(target: str) -> bool:
    """Whether a ``host:port`` target is on this machine (where the local mesh runs)."""
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 or "]" in target else target
    return host.removeprefix("ipv4:") in LOOPBACK_HOSTS


def discover_token(env: Mapping[str, str], *, local: bool = True) -> str:
    """The bearer token for the edge: ``SWITCHBOARD_TOKEN``, else the file named by
    ``SWITCHBOARD_TOKEN_FILE``, else (for a ``local`` target only: it is no one else's
    business) the local mesh's development token if there is one
    (``$SWITCHBOARD_DATA_DIR/mesh/auth/dev-token``), else none."""
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    if env.get(TOKEN_FILE_ENV):
        try:
            return _read_token(Path(env[TOKEN_FILE_ENV]))
        except OSError as exc:
            raise ValueError(f"{TOKEN_FILE_ENV}: cannot read {exc.filename}") from None
    if not local:
        return ""
    dev = Path(env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / DEV_TOKEN_RELPATH
    try:
        return _read_token(dev)
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class ConnectConfig:
    """Where and how a client connects; every call gets ``timeout_s`` unless overridden."""

    target: str = DEFAULT_TARGET
    timeout_s: float = 10.0
    metadata: tuple[tuple[str, str], ...] = ()
    max_message_bytes: int = 8 * 1024 * 1024
    wait_for_ready: bool = False
    channel_options: tuple[tuple[str, int | str], ...] = field(default=())
    token: str = field(default="", repr=False)
    """A bearer token for the edge, sent as ``authorization`` on every call; empty: none."""
    tls_ca_file: str = ""
    """A PEM file of the CA that signed the edge's certificate: connect with TLS."""

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("ConnectConfig.target must not be empty")
        if not self.timeout_s > 0:
            raise ValueError("ConnectConfig.timeout_s must be positive")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> ConnectConfig:
        """Defaults, then ``SWITCHBOARD_TARGET`` / ``SWITCHBOARD_TIMEOUT_S`` /
        ``SWITCHBOARD_TLS_CA_FILE``, the token of :func:`discover_token`, then overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get(TARGET_ENV):
            values["target"] = env[TARGET_ENV]
        if env.get(TIMEOUT_ENV):
            try:
                values["timeout_s"] = float(env[TIMEOUT_ENV])
            except ValueError as exc:
                raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds") from exc
        if env.get(TLS_CA_FILE_ENV):
            values["tls_ca_file"] = env[TLS_CA_FILE_ENV]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "token" not in values:
            target = str(values.get("target", DEFAULT_TARGET))
            values["token"] = discover_token(env, local=is_loopback(target))
        return cls(**values)  # type: ignore[arg-type]
