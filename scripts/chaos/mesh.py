"""The mesh the chaos suite disrupts: real redis-servers and ``switchboard up --detach``
(replicas=2 of classification, context and orchestration) on free loopback ports,
every process stopped by its PID on the way out, whatever happened."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from switchboard_server.mesh.health import probe_grpc
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.testing import PortPool

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 240.0


class RedisProcess:
    """A redis-server on 127.0.0.1:``port``, append-only with fsync always, that can be
    stopped and started again on the same port and directory (its data survives)."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (run scripts/install-system-deps.sh)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.RedisError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        self.stop()
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _topology(ports: PortPool, tmp: Path) -> Path:
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    for spec in raw["services"].values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = ports()
        spec["egress_ports"] = {callee: ports() for callee in spec.get("egress_ports", {})}
    path = tmp / "topology.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class Mesh:
    """A running mesh: its edge, its state file, and what the scenarios need of it."""

    edge: str
    data_dir: Path
    env: dict[str, str]
    redis: RedisProcess | None
    """Context's store (what the redis-restart scenario restarts)."""
    log_redis: RedisProcess | None = None
    """Orchestration's conversation log, when its replicas share one (a server of its own)."""

    @property
    def state_file(self) -> Path:
        return self.data_dir / "mesh" / "state.json"

    def processes(self) -> dict[str, dict[str, Any]]:
        state = json.loads(self.state_file.read_text())
        return {p["name"]: p for p in state["processes"]}

    def pid(self, name: str) -> int:
        pid = self.processes()[name]["pid"]
        if not pid:
            raise RuntimeError(f"{name} has no running process")
        return int(pid)

    def apps(self, service: str) -> list[str]:
        """The app processes of ``service``: ``service-0``, ``service-1``, ..."""
        return sorted(n for n, p in self.processes().items() if n.startswith(f"{service}-")
                      and p["role"] == "app")  # fmt: skip

    @property
    def context_app(self) -> str:
        """host:port of context-0's app itself (loopback, no sidecar): for the audit."""
        return str(self.processes()["context-0"]["endpoints"]["grpc"])

    def admin_port(self, app: str) -> int:
        """The admin port of the sidecar in front of ``app``."""
        return int(self.processes()[f"{app}.sidecar"]["probe"]["target"])

    async def wait_serving(self, app: str, *, old_pid: int | None, timeout_s: float = 60) -> float:
        """Wait until ``app`` runs as a new process (when ``old_pid``) and its sidecar
        answers SERVING; the seconds it took."""
        start = time.monotonic()
        while True:
            info = self.processes()[app]
            new = bool(info["pid"]) and info["pid"] != old_pid
            if new and await probe_grpc(info["probe"]) == "SERVING":
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"{app} not SERVING again within {timeout_s:g} s")
            await asyncio.sleep(0.1)

    async def wait_seen_healthy(self, app: str, *, timeout_s: float = 60) -> float:
        """Wait until every Envoy that routes to ``app``'s sidecar lists it as healthy
        (admin ``/clusters``: health_flags ``healthy``, neither failing its health check
        nor ejected); the seconds it took."""
        host = self.processes()[app]["probe"]["target"]
        admins = [p["probe"]["target"] for p in self.processes().values()
                  if p["probe"].get("kind") == "envoy"]  # fmt: skip
        needle = f"::{host}::health_flags::"
        start = time.monotonic()
        async with httpx.AsyncClient() as client:
            while True:
                flags = []
                for port in admins:
                    reply = await client.get(f"http://127.0.0.1:{port}/clusters")
                    flags += [line.split(needle)[1].strip()
                              for line in reply.text.splitlines() if needle in line]  # fmt: skip
                if flags and all(flag == "healthy" for flag in flags):
                    return time.monotonic() - start
                if time.monotonic() - start > timeout_s:
                    raise TimeoutError(f"{app}: callers still see {sorted(set(flags))}")
                await asyncio.sleep(0.1)

    async def runtime(self, app: str, values: Mapping[str, str | int]) -> None:
        """Set runtime keys on the sidecar in front of ``app`` (admin /runtime_modify)."""
        async with httpx.AsyncClient() as client:
            reply = await client.post(
                f"http://127.0.0.1:{self.admin_port(app)}/runtime_modify",
                params={k: str(v) for k, v in values.items()},
            )
            reply.raise_for_status()

    async def counter(self, app: str, name: str) -> int:
        """A counter of the sidecar in front of ``app`` (0 when it does not exist yet)."""
        async with httpx.AsyncClient() as client:
            reply = await client.get(
                f"http://127.0.0.1:{self.admin_port(app)}/stats",
                params={"filter": f"^{name}$", "format": "json"},
            )
            reply.raise_for_status()
        stats = reply.json().get("stats", [])
        return int(stats[0]["value"]) if stats else 0


def _mesh_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard_server.mesh", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S + 30,
        check=False,
    )


@contextlib.contextmanager
def chaos_mesh(
    tmp: Path,
    *,
    store: str = "redis",
    replicas: int = 2,
    orchestration: int = 2,
    env: Mapping[str, str] | None = None,
) -> Iterator[Mesh]:
    """The mesh with ``replicas`` of classification and context (context on ``store``)
    and ``orchestration`` replicas (several share a conversation log on a redis-server
    of its own; one keeps it in SQLite); ``switchboard down`` after, then SIGKILL to
    any process group it left behind, and the redis-servers stopped by their PIDs."""
    tmp.mkdir(parents=True, exist_ok=True)
    ports = PortPool()
    edge_port = ports()
    full_env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(_topology(ports, tmp)),
        "SWITCHBOARD_MESH_EDGE_PORT": str(edge_port),
        "SWITCHBOARD_MESH_EDGE_ADMIN_PORT": str(ports()),
        "SWITCHBOARD_MESH_FRONTDOOR_PORT": str(ports()),
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "false",
        "SWITCHBOARD_MESH_STARTUP_TIMEOUT_S": str(STARTUP_TIMEOUT_S - 30),
        "SWITCHBOARD_MESH_FAULT_INJECTION": "true",
        # about failures behind the edge: no client tokens, no per-client limit
        "SWITCHBOARD_MESH_INSECURE": "true",
        "SWITCHBOARD_CONTEXT_STORE": store,
        # room for every turn of a run, so the memory audit can count them
        "SWITCHBOARD_CONTEXT_EPISODIC_CAP": "10000",
        **(env or {}),
    }
    redis_server = log_redis = None
    pids: list[int] = []
    try:
        if store == "redis":
            redis_server = RedisProcess(ports(), tmp / "redis")
            redis_server.start()
            full_env["SWITCHBOARD_CONTEXT_REDIS_URL"] = redis_server.url
        if orchestration > 1:
            log_redis = RedisProcess(ports(), tmp / "redis-log")
            log_redis.start()
            full_env["SWITCHBOARD_ORCHESTRATION_STORE"] = "redis"
            full_env["SWITCHBOARD_ORCHESTRATION_REDIS_URL"] = log_redis.url
        up = _mesh_cli(
            full_env, "up", "--detach",
            "--replicas", f"classification={replicas}", "--replicas", f"context={replicas}",
            "--replicas", f"orchestration={orchestration}",
        )  # fmt: skip
        mesh = Mesh(f"127.0.0.1:{edge_port}", tmp / "data", full_env, redis_server, log_redis)
        if mesh.state_file.exists():
            pids = [p["pid"] for p in mesh.processes().values() if p["pid"]]
            pids.append(json.loads(mesh.state_file.read_text())["supervisor_pid"])
        if up.returncode != 0:
            raise RuntimeError(f"switchboard up failed:\n{up.stdout}\n{up.stderr}")
        yield mesh
    finally:
        with contextlib.suppress(Exception):
            for p in Mesh("", tmp / "data", full_env, None).processes().values():
                if p["pid"]:
                    pids.append(p["pid"])  # restarted children have new PIDs
        for pid in pids:  # a frozen process cannot stop
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
        _mesh_cli(full_env, "down")
        for pid in pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        for server in (redis_server, log_redis):
            if server is not None:
                server.stop()
