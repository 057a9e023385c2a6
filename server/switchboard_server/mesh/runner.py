"""``switchboard up``: run the apps, their sidecars, the edge (and a trace receiver).

The runner renders the Envoy configs for a :class:`Plan`, starts every process as a
child (see :mod:`.processes`), waits until each is healthy (apps by gRPC health
through their sidecar, every Envoy by admin ``/ready``, the whole by gRPC health
through the edge), writes the state file ``<data_dir>/mesh/state.json`` that
``switchboard status``/``stats``/``down`` read, restarts a child that dies (with
doubling back-off), and on stop drains in order: edge and front door, apps (callers
first), sidecars.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import structlog

from switchboard_server.config import Settings
from switchboard_server.mesh.edge.frontdoor import exposed_services
from switchboard_server.mesh.edge.web import page_origin
from switchboard_server.mesh.envoy import admin_url, counters, envoy_command
from switchboard_server.mesh.health import envoy_ready, grpc_health
from switchboard_server.mesh.processes import Child, ChildSpec
from switchboard_server.mesh.render import render_all, write_configs
from switchboard_server.mesh.rollout.state import ensure_runtime
from switchboard_server.mesh.rollout.variants import variant_env
from switchboard_server.mesh.security.certs import OPERATOR, CertError
from switchboard_server.mesh.security.mtls import MeshTls, cert_store, identities, prepare
from switchboard_server.mesh.security.tokens import DevAuth, prepare_dev_auth
from switchboard_server.mesh.state import MeshState, ProcessInfo, write_state
from switchboard_server.mesh.topology import Plan, Replica

log = structlog.get_logger(__name__)

SERVING = "SERVING"
POLL_S = 0.2
_LAST_OUTPUT_CHARS = 500  # of a child's last output line, in its exit and failure logs
_ACTIVE = re.compile(r"^http\.(?!admin\.)[^.]+\.downstream_rq_active$")


@dataclass(frozen=True)
class Probe:
    """How to tell one child is healthy: gRPC health at a target, or Envoy /ready."""

    kind: str  # grpc | envoy | http
    target: str  # host:port for grpc, admin port for envoy, URL for http
    service: str = ""
    identity_dir: str = ""  # grpc over mTLS as this identity (a sidecar's public port)
    server_name: str = ""  # ... checking the server's certificate names this service


@dataclass(frozen=True)
class Entry:
    spec: ChildSpec
    probe: Probe
    info: dict[str, Any]  # ports shown by status


def mesh_dir(settings: Settings) -> Path:
    return settings.core.data_dir / "mesh"


def certs_dir(settings: Settings) -> Path:
    """Where the mesh's CA and identities live (SWITCHBOARD_MESH_CERTS_DIR)."""
    return settings.mesh.certs_dir or mesh_dir(settings) / "certs"


def planned_ports(plan: Plan) -> dict[str, int]:
    """Every port the plan listens on, by what listens there."""
    ports = {
        "edge": plan.edge_port,
        "edge admin": plan.edge_admin_port,
        "frontdoor": plan.frontdoor_port,
    }
    for r in plan.all_replicas():
        ports |= {
            f"{r.name} app": r.app_port,
            f"{r.name} sidecar": r.sidecar_port,
            f"{r.name} sidecar admin": r.admin_port,
            f"{r.name} metrics": r.metrics_port,
        }
        ports |= {f"{r.name} egress to {c}": p for c, p in r.egress_ports.items()}
    return ports


def ports_in_use(plan: Plan) -> list[str]:
    """'<what> (<port>)' for each planned port something already listens on."""
    busy = []
    for what, port in planned_ports(plan).items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Envoy/gRPC do
            try:
                sock.bind((plan.host, port))
            except OSError:
                busy.append(f"{what} ({port})")
    return busy


class MeshRunner:
    """Supervises every process of one mesh until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        *,
        out: TextIO | None = None,
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.mesh = settings.mesh
        self.plan = plan
        self.out = out or sys.stdout
        self.python = python
        self.dir = mesh_dir(settings)
        self.state_path = self.dir / "state.json"
        self.children: dict[str, Child] = {}
        self.entries: dict[str, Entry] = {}
        self.status = "starting"
        self.stopping = False
        self._failures: dict[str, int] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._width = 12
        self.otlp_endpoint = settings.observability.otlp_endpoint
        self.trace_query_url = ""
        self.tls: MeshTls | None = None
        self.certs_dir = certs_dir(settings)
        if not self.otlp_endpoint and self.mesh.trace_receiver:
            obs = settings.observability
            self.otlp_endpoint = f"{self.plan.host}:{obs.receiver_port}"
            self.trace_query_url = f"http://{self.plan.host}:{obs.receiver_query_port}"

    # -- what runs ---------------------------------------------------------------------

    def _app_env(self, replica: Replica) -> dict[str, str]:
        env = {
            "SWITCHBOARD_HOST": self.plan.host,
            "SWITCHBOARD_PORT": str(replica.app_port),
            "SWITCHBOARD_DATA_DIR": str(self.settings.core.data_dir),
            "SWITCHBOARD_LOG_FORMAT": "json",
            "SWITCHBOARD_OBS_METRICS_PORT": str(replica.metrics_port),
            "SWITCHBOARD_OBS_OTLP_ENDPOINT": self.otlp_endpoint,
            "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO": str(self.mesh.trace_sample_ratio),
            "SWITCHBOARD_DRAIN_DELAY_S": str(self.mesh.app_drain_delay_s),
        }
        for callee, port in replica.egress_ports.items():
            env[f"SWITCHBOARD_{replica.service.upper()}_{callee.upper()}_TARGET"] = (
                f"127.0.0.1:{port}"
            )
        spec = self.plan.topology.services[replica.service]
        if spec.variants:
            comparator = f"{self.plan.host}:{self.mesh.rollout_comparator_port}"
            env.update(variant_env(spec, replica, self.settings.core.data_dir, comparator))
        return env

    def build(self) -> list[Entry]:
        """Render the configs and describe every child (does not start anything)."""
        host = self.plan.host
        self.mesh = prepare_dev_auth(self.mesh, self.settings.core.data_dir)
        if not self.mesh.insecure:
            self.tls = prepare(self.plan, self.mesh, self.certs_dir)
        rollout_root = self.dir / "rollout"
        ensure_runtime(rollout_root, self.plan.topology)
        configs = write_configs(
            render_all(
                self.plan,
                self.mesh,
                self.otlp_endpoint,
                trace_sample_ratio=self.mesh.trace_sample_ratio,
                tls=self.tls,
                rollout_root=rollout_root,
            ),
            self.dir / "envoy",
        )
        entries: list[Entry] = []
        if self.trace_query_url:
            obs = self.settings.observability
            argv = [self.python, "-m", "switchboard_server.mesh", "trace-receiver"]
            argv += ["--port", str(obs.receiver_port), "--query-port"]
            argv += [str(obs.receiver_query_port)]
            entries.append(
                Entry(
                    ChildSpec("traces", "traces", argv),
                    Probe("http", f"{self.trace_query_url}/healthz"),
                    {"otlp": self.otlp_endpoint, "query": f"{self.trace_query_url}/traces"},
                )
            )
        for replica in self.plan.all_replicas():
            spec = self.plan.topology.services[replica.service]
            argv = [self.python, "-m", self.mesh.app_module, replica.service]
            entries.append(
                Entry(
                    ChildSpec(replica.name, "app", argv, self._app_env(replica)),
                    self._sidecar_probe(replica, spec.grpc_service),
                    {
                        "grpc": f"{host}:{replica.app_port}",
                        "metrics": f"http://{host}:{replica.metrics_port}/metrics",
                    },
                )
            )
            name = f"{replica.name}.sidecar"
            entries.append(self._envoy(name, "sidecar", configs[name], replica.admin_port))
            self._sidecar_info(entries[-1], replica)
        if any(spec.variants for spec in self.plan.topology.services.values()):
            entries.append(self._comparator())
        entries.append(self._frontdoor())
        edge = self._envoy("edge", "edge", configs["edge"], self.plan.edge_admin_port)
        edge.info["grpc"] = f"{host}:{self.plan.edge_port}"
        edge.info["web"] = f"{page_origin(self.plan)}/"
        edge.info["auth"] = self._auth_info()
        entries.append(edge)
        return entries

    def _auth_info(self) -> str:
        """How the edge authenticates clients, for ``switchboard status`` (no secrets)."""
        if not self.mesh.edge_auth:
            return "none (insecure)"
        dev = DevAuth.under(self.settings.core.data_dir)
        if self.mesh.edge_jwks_file == dev.jwks_path.absolute():
            return f"jwt, development token in {dev.token_path}"
        return f"jwt, keys from {self.mesh.edge_jwks_url or self.mesh.edge_jwks_file}"

    def _comparator(self) -> Entry:
        """Joins shadow answers with stable's (:mod:`.rollout.comparator`)."""
        argv = [self.python, "-m", "switchboard_server.mesh", "rollout-comparator"]
        argv += ["--host", self.plan.host, "--port", str(self.mesh.rollout_comparator_port)]
        argv += ["--metrics-port", str(self.mesh.rollout_comparator_metrics_port)]
        argv += ["--max-pending", str(self.mesh.rollout_comparator_max_pending)]
        metrics = f"http://{self.plan.host}:{self.mesh.rollout_comparator_metrics_port}/metrics"
        udp = f"{self.plan.host}:{self.mesh.rollout_comparator_port}"
        return Entry(
            ChildSpec("comparator", "comparator", argv, {"SWITCHBOARD_LOG_FORMAT": "json"}),
            Probe("http", metrics),
            {"udp": udp, "metrics": metrics},
        )

    def _frontdoor(self) -> Entry:
        """Health and reflection behind the edge; healthy once every exposed service is
        (its overall status)."""
        argv = [self.python, "-m", "switchboard_server.frontdoor"]
        argv += ["--port", str(self.plan.frontdoor_port)]
        argv += ["--edge-admin-port", str(self.plan.edge_admin_port)]
        for service, cluster in exposed_services(self.plan.topology).items():
            argv += ["--expose", f"{service}={cluster}"]
        target = f"{self.plan.host}:{self.plan.frontdoor_port}"
        env = {"SWITCHBOARD_LOG_FORMAT": "json"}
        return Entry(
            ChildSpec("frontdoor", "frontdoor", argv, env), Probe("grpc", target), {"grpc": target}
        )

    def _sidecar_probe(self, replica: Replica, grpc_service: str) -> Probe:
        """An app's health through its sidecar's public port (as the operator with mTLS)."""
        target = f"{self.plan.host}:{replica.sidecar_port}"
        if self.tls is None:
            return Probe("grpc", target, grpc_service)
        operator = str(self.certs_dir / OPERATOR)
        return Probe("grpc", target, grpc_service, operator, replica.service)

    def _sidecar_info(self, entry: Entry, replica: Replica) -> None:
        entry.info["grpc"] = f"{self.plan.host}:{replica.sidecar_port}"
        for callee, port in replica.egress_ports.items():
            entry.info[f"egress.{callee}"] = f"127.0.0.1:{port}"

    def _envoy(self, name: str, role: str, config: Path, admin_port: int) -> Entry:
        argv = envoy_command(config, self.mesh)
        return Entry(
            ChildSpec(name, role, argv, {"SWITCHBOARD_ENVOY_NAME": name}),
            Probe("envoy", str(admin_port)),
            {"admin": f"http://127.0.0.1:{admin_port}"},
        )

    # -- life cycle --------------------------------------------------------------------

    def _sink(self, name: str, line: str) -> None:
        self.out.write(f"{name:<{self._width}} | {line}\n")
        self.out.flush()

    async def run(self, stop: asyncio.Event, on_healthy: Callable[[], None] | None = None) -> int:
        """Start everything, wait for health, supervise until ``stop``; the exit code."""
        entries = self.build()
        self._width = max(len(e.spec.name) for e in entries)
        self.entries = {e.spec.name: e for e in entries}
        exit_code = 0
        try:
            for entry in entries:
                child = Child(entry.spec, self._sink)
                self.children[entry.spec.name] = child
                await child.start()
                self._watchers.append(asyncio.create_task(self._watch(child, stop)))
            if self.tls is not None:  # from the start: a slow start must not outlive a cert
                self._watchers.append(asyncio.create_task(self._rotate_certs(stop)))
            self._write("starting")
            if not await self._wait_healthy(stop):
                if not stop.is_set():
                    exit_code = 1
                    self._write("failed")
            else:
                self._write("healthy")
                if on_healthy is not None:
                    on_healthy()
                await stop.wait()
        finally:
            await self.shutdown()
        return exit_code

    async def probe(self, client: httpx.AsyncClient, entry: Entry) -> str:
        probe = entry.probe
        if probe.kind == "grpc":
            return await grpc_health(
                probe.target,
                probe.service,
                identity_dir=Path(probe.identity_dir) if probe.identity_dir else None,
                server_name=probe.server_name,
            )
        if probe.kind == "envoy":
            return await envoy_ready(client, int(probe.target))
        try:
            reply = await client.get(probe.target, timeout=1.0)
        except httpx.HTTPError:
            return "UNREACHABLE"
        return SERVING if reply.status_code == 200 else f"HTTP_{reply.status_code}"

    async def _wait_healthy(self, stop: asyncio.Event) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.mesh.startup_timeout_s
        edge = f"{self.plan.host}:{self.plan.edge_port}"
        pending = set(self.entries)
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                names = sorted(pending)  # probed side by side: a round takes the slowest one
                results = await asyncio.gather(
                    *(self.probe(client, self.entries[name]) for name in names)
                )
                for name, result in zip(names, results, strict=True):
                    if result == SERVING:
                        pending.discard(name)
                        log.info("child.healthy", child=name)
                if not pending and await grpc_health(edge) == SERVING:
                    return True
                if loop.time() > deadline:
                    log.error(
                        "mesh.unhealthy",
                        waiting_for=sorted(pending) or ["edge"],
                        exited=self._exits(pending),
                    )
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
        return False

    def _exits(self, names: set[str]) -> dict[str, str]:
        """Of the children ``names``, those that exited: last exit code and output line."""
        exits = {}
        for name in sorted(names):
            child = self.children.get(name)
            if child is not None and child.last_exit_code is not None:
                last = child.last_output[-_LAST_OUTPUT_CHARS:]
                exits[name] = f"exit code {child.last_exit_code}: {last}"
        return exits

    def _backoff(self, child: Child) -> float:
        ran = time.monotonic() - child.started_at
        if ran >= self.mesh.restart_reset_after_s:
            self._failures[child.name] = 0
        failures = self._failures.get(child.name, 0)
        self._failures[child.name] = failures + 1
        delay = self.mesh.restart_backoff_initial_s * 2**failures
        return float(min(delay, self.mesh.restart_backoff_max_s))

    async def _watch(self, child: Child, stop: asyncio.Event) -> None:
        while True:
            code = await child.wait()
            if self.stopping or stop.is_set():
                return
            child.last_exit_code = code
            delay = self._backoff(child)
            log.warning(
                "child.exited",
                child=child.name,
                code=code,
                restart_in_s=delay,
                last_output=child.last_output[-_LAST_OUTPUT_CHARS:],
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if self.stopping or stop.is_set():
                return
            child.restarts += 1
            await child.start()
            self._write(self.status)

    async def _rotate_certs(self, stop: asyncio.Event) -> None:
        """Reissue every certificate past its rotation point (2/3 of its lifetime by
        default), checked every ``cert_check_interval_s``; Envoy reads them through its
        SDS watch, nothing restarts."""
        store = cert_store(self.mesh, self.certs_dir)
        names = identities(self.plan.topology)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.mesh.cert_check_interval_s)
            if stop.is_set():
                return
            try:
                issued = await asyncio.to_thread(store.ensure, names)
            except (CertError, OSError) as exc:
                log.error("certs.rotation_failed", error=str(exc))
                continue
            if issued:
                log.info("certs.rotated", identities=issued)

    async def shutdown(self) -> None:
        """Drain: edge first, then apps (callers first), then sidecars and the rest."""
        if self.stopping:
            return
        self.stopping = True
        self._write("stopping")
        timeout = self.mesh.stop_timeout_s
        callers_first = sorted(self.plan.topology.services.values(), key=lambda s: -len(s.calls))
        order = [["edge", "frontdoor"]]  # the front door goes NOT_SERVING as the edge drains
        order += [[r.name for r in self.plan.replicas[s.name]] for s in callers_first]
        order.append([n for n in self.children if n.endswith(".sidecar")])
        order.append([n for n in self.children if n not in {x for g in order for x in g}])
        async with httpx.AsyncClient() as client:
            for group in order:
                children = [self.children[n] for n in group if n in self.children]
                await asyncio.gather(*(self._drain_envoy(client, c) for c in children))
                await asyncio.gather(*(c.stop(timeout) for c in children))
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._write("stopped")
        log.info("mesh.stopped")

    async def _drain_envoy(self, client: httpx.AsyncClient, child: Child) -> None:
        """Let an Envoy finish its in-flight requests (GOAWAY, no new streams), up to
        ``envoy_drain_s``, before it gets SIGTERM."""
        entry = self.entries[child.name]
        if entry.probe.kind != "envoy" or not child.running:
            return
        port = int(entry.probe.target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.mesh.envoy_drain_s
        with contextlib.suppress(httpx.HTTPError):
            await client.post(admin_url(port, "/drain_listeners?graceful"), timeout=1.0)
            while loop.time() < deadline:
                stats = await counters(client, port)
                active = sum(v for k, v in stats.items() if _ACTIVE.match(k))
                if active == 0:
                    return
                await asyncio.sleep(0.05)

    # -- the state file ----------------------------------------------------------------

    def _write(self, status: str) -> None:
        self.status = status
        processes = [
            ProcessInfo(
                name=name,
                role=self.entries[name].spec.role,
                pid=child.pid,
                restarts=child.restarts,
                probe=self.entries[name].probe.__dict__,
                endpoints=self.entries[name].info,
            )
            for name, child in self.children.items()
        ]
        state = MeshState(
            supervisor_pid=os.getpid(),
            status=status,
            edge_grpc=f"{self.plan.host}:{self.plan.edge_port}",
            edge_admin=f"http://127.0.0.1:{self.plan.edge_admin_port}",
            trace_receiver=self.otlp_endpoint or "off",
            trace_query=f"{self.trace_query_url}/traces" if self.trace_query_url else "",
            processes=processes,
        )
        write_state(self.state_path, state)
