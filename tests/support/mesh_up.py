"""The real mesh (``switchboard up --detach``: the real services, their sidecars and the
edge) on free loopback ports, for tests that need it end to end; SIGKILL to every
process group it started afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from switchboard_client import DEV_TOKEN_RELPATH
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.testing import PortPool

ROOT = Path(__file__).parents[2]
# The origin the shared mesh (tests/mesh/conftest.py) allows besides the edge's own.
EXTRA_CORS_ORIGIN = "https://chat.example.com"


@dataclass(frozen=True)
class UpMesh:
    edge: str  # host:port
    edge_admin_port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.edge}"

    @property
    def token(self) -> str:
        """The development token `up` minted (what the CLI and ConnectConfig pick up)."""
        return (self.data_dir / DEV_TOKEN_RELPATH).read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


def _topology(ports: PortPool) -> dict[str, object]:
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    for spec in raw["services"].values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = ports()
        spec["egress_ports"] = {callee: ports() for callee in spec.get("egress_ports", {})}
    return raw  # type: ignore[no-any-return]


def _mesh(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard_server.mesh", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@contextlib.contextmanager
def mesh_up(
    tmp: Path,
    env: Mapping[str, str] | None = None,
    edit_topology: Callable[[dict[str, Any]], None] | None = None,
    *,
    down: bool = False,
) -> Iterator[UpMesh]:
    """Start the mesh with ``env`` on top of generous test defaults; kill it after (with
    ``down``: stop it with `switchboard down` first, for a test that reads what the
    graceful stop logs). ``edit_topology`` changes the topology document first."""
    ports = PortPool()
    topology = tmp / "topology.yaml"
    raw = _topology(ports)
    if edit_topology is not None:
        edit_topology(raw)
    topology.write_text(yaml.safe_dump(raw))
    edge_port, admin_port = ports(), ports()
    full_env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(topology),
        "SWITCHBOARD_MESH_EDGE_PORT": str(edge_port),
        "SWITCHBOARD_MESH_EDGE_ADMIN_PORT": str(admin_port),
        "SWITCHBOARD_MESH_FRONTDOOR_PORT": str(ports()),
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "false",
        "SWITCHBOARD_MESH_STARTUP_TIMEOUT_S": "180",
        # generous peer deadlines: a loaded test machine must not turn into "degraded"
        "SWITCHBOARD_ORCHESTRATION_CLASSIFY_TIMEOUT_MS": "5000",
        "SWITCHBOARD_ORCHESTRATION_CONTEXT_TIMEOUT_MS": "5000",
        "SWITCHBOARD_ORCHESTRATION_MEMORY_TIMEOUT_MS": "5000",
        **(env or {}),
    }
    up = _mesh(full_env, "up", "--detach")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield UpMesh(f"127.0.0.1:{edge_port}", admin_port, tmp / "data")
    finally:
        if down:
            _mesh(full_env, "down")
        _kill(tmp / "data" / "mesh" / "state.json")


def _kill(state_file: Path) -> None:
    """SIGKILL the supervisor, then every child's process group, and wait until they are
    gone. Not `down`: its graceful drain (each app's drain delay, callers first, then the
    sidecars: ~10 s a mesh) shows nothing once the tests are done, and
    tests/mesh/test_mesh_up.py proves it on a mesh of its own."""
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    pids = [state["supervisor_pid"], *(p["pid"] for p in state["processes"] if p["pid"])]
    for pid in pids:  # the supervisor first: it restarts a child that dies
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
