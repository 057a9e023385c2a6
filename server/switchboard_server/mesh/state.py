"""The state file of a running mesh (``<data_dir>/mesh/state.json``), written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    role: str
    pid: int | None
    restarts: int
    probe: dict[str, Any]
    endpoints: dict[str, Any]


@dataclass(frozen=True)
class MeshState:
    supervisor_pid: int
    status: str  # starting | healthy | failed | stopping | stopped
    edge_grpc: str
    edge_admin: str
    trace_receiver: str
    trace_query: str
    processes: list[ProcessInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MeshState:
        processes = [ProcessInfo(**p) for p in raw.get("processes", [])]
        return cls(**{**raw, "processes": processes})


def write_state(path: Path, state: MeshState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    os.replace(tmp, path)


def read_state(path: Path) -> MeshState | None:
    try:
        return MeshState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
