"""Where ``switchboard kb`` finds the context service.

``--address HOST:PORT``, else ``SWITCHBOARD_CONTEXT_TARGET``, else the local mesh that
``switchboard up`` runs from this directory: its state file
(``$SWITCHBOARD_DATA_DIR/mesh/state.json``, by default under ``.switchboard/data``) names
each replica's app address. The context service is not exposed at the edge, and its
sidecar's public listener is for the mesh's peers (mutual TLS and per-caller RBAC), so an
operator's tool on the same host talks to a context app on loopback, as ``grpcurl`` does in
the docs. With several replicas any one will do: they share the knowledge base (Redis).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CONTEXT_TARGET_ENV", "DATA_DIR_ENV", "DEFAULT_DATA_DIR", "TargetError", "resolve"]

CONTEXT_TARGET_ENV = "SWITCHBOARD_CONTEXT_TARGET"
DATA_DIR_ENV = "SWITCHBOARD_DATA_DIR"
DEFAULT_DATA_DIR = Path(".switchboard/data")
"""The server's default ``SWITCHBOARD_DATA_DIR`` (a test keeps the two equal)."""


class TargetError(Exception):
    """No address given and no running local mesh to take one from."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve(address: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The context service's ``host:port``."""
    env = os.environ if environ is None else environ
    if address:
        return address
    if env.get(CONTEXT_TARGET_ENV):
        return env[CONTEXT_TARGET_ENV]
    state_path = Path(env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / "mesh" / "state.json"
    hint = f"pass --address HOST:PORT or set {CONTEXT_TARGET_ENV}"
    try:
        state = json.loads(state_path.read_text())
    except FileNotFoundError:
        raise TargetError(f"no local mesh state at {state_path}; {hint}") from None
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read {state_path} ({exc}); {hint}") from None
    pid = state.get("supervisor_pid")
    if state.get("status") in ("stopped", "failed") or not (isinstance(pid, int) and _alive(pid)):
        raise TargetError(f"the local mesh is not running ({state_path}); {hint}")
    for process in state.get("processes", []):
        name = str(process.get("name", ""))
        if process.get("role") == "app" and name.startswith("context-"):
            grpc = process.get("endpoints", {}).get("grpc")
            if isinstance(grpc, str) and grpc:
                return grpc
    raise TargetError(f"the local mesh runs no context service ({state_path}); {hint}")
