"""Real Envoy processes on free loopback ports in front of in-process fake apps.

``Mesh`` renders the configs with the production renderer, starts every Envoy as a
child process (killed by PID on exit, even on failure) and the fake apps in-process,
except the replicas named in ``processes``: those run as ``python -m tests.mesh.fake_app``
children, so a test can stop them with a signal (SIGSTOP: a hung replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from switchboard_server.app import AppServer, create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.frontdoor.server import FrontDoor, create_frontdoor
from switchboard_server.mesh.addresses import AddressPlan
from switchboard_server.mesh.edge.frontdoor import exposed_services
from switchboard_server.mesh.envoy import cluster_hosts, counters, envoy_command, is_ready
from switchboard_server.mesh.render import render_all, write_configs
from switchboard_server.mesh.security.mtls import MeshTls, prepare
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan, Topology, make_plan
from switchboard_server.service import ServiceModule
from switchboard_server.testing import PortPool
from tests.support.mesh_fakes import CLASSIFICATION, CONTEXT, FakeModule

READY_TIMEOUT_S = 30.0
_SERVICES = {"classification": CLASSIFICATION, "context": CONTEXT}


@dataclass
class Mesh:
    plan: Plan
    settings: MeshSettings
    apps: dict[str, AppServer] = field(default_factory=dict)
    modules: dict[str, FakeModule] = field(default_factory=dict)
    frontdoor: FrontDoor | None = None
    envoys: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    app_processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    admin_ports: dict[str, int] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    http: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)
    tls: MeshTls | None = None  # mTLS between the Envoys (unless settings.insecure)

    @property
    def edge(self) -> str:
        return f"127.0.0.1:{self.plan.edge_port}"

    async def edge_stats(self) -> dict[str, int]:
        return await counters(self.http, self.plan.edge_admin_port)

    async def edge_hosts(self) -> dict[str, list[Any]]:
        return await cluster_hosts(self.http, self.plan.edge_admin_port)

    def edge_log(self) -> str:
        return self.logs["edge"].read_text()


def sub_topology(topology: Topology, services: Mapping[str, int]) -> Topology:
    """Only ``services`` (name -> replicas), all routed by the edge."""
    kept = {name: topology.services[name] for name in services}
    return Topology(services=kept, edge_routes=tuple(services)).with_replicas(services)


@contextlib.asynccontextmanager
async def running_mesh(
    topology: Topology,
    settings: MeshSettings,
    tmp: Path,
    otlp_endpoint: str = "",
    *,
    processes: Collection[str] = (),
    apps: Mapping[str, ServiceModule] | None = None,
    addresses: Callable[[Plan], AddressPlan] | None = None,
) -> AsyncIterator[Mesh]:
    """The mesh with fake apps, except replicas named in ``apps`` (replica name -> the
    module to serve there instead); ``addresses`` makes the plan's address plan
    (default: the local one)."""
    plan = make_plan(topology, settings, PortPool())
    mesh = Mesh(plan=plan, settings=settings)
    try:
        for replica in plan.all_replicas():
            if replica.name in processes:
                mesh.app_processes[replica.name] = await _app_process(
                    replica.service,
                    replica.app_port,
                    tmp / replica.name,
                    tmp / f"{replica.name}.log",
                )
                continue
            app_settings = Settings(core=CoreSettings(data_dir=tmp / replica.name))
            real = (apps or {}).get(replica.name)
            module = FakeModule(_SERVICES[replica.service]) if real is None else None
            server, _ = await create_server(
                app_settings,
                ServiceName(replica.service),
                f"127.0.0.1:{replica.app_port}",
                module=module or real,
            )
            await server.start()
            mesh.apps[replica.name] = server
            if module is not None:
                mesh.modules[replica.name] = module
        mesh.frontdoor, _ = await create_frontdoor(
            exposed_services(topology),
            plan.edge_admin_port,
            f"127.0.0.1:{plan.frontdoor_port}",
            interval_s=settings.health_interval_s,
            grace_s=0,
        )
        await mesh.frontdoor.start()
        if not settings.insecure:
            mesh.tls = prepare(plan, settings, tmp / "certs")
        address_plan = addresses(plan) if addresses else None
        configs = render_all(plan, settings, otlp_endpoint, addresses=address_plan, tls=mesh.tls)
        paths = write_configs(configs, tmp / "envoy")
        mesh.admin_ports = {"edge": plan.edge_admin_port} | {
            f"{r.name}.sidecar": r.admin_port for r in plan.all_replicas()
        }
        for name, path in paths.items():
            log = tmp / f"{name}.log"
            mesh.logs[name] = log
            with log.open("wb") as out:
                mesh.envoys[name] = await asyncio.create_subprocess_exec(
                    *envoy_command(path, settings),
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**os.environ, "SWITCHBOARD_ENVOY_NAME": name},
                    start_new_session=True,
                )
        await _wait_ready(mesh)
        yield mesh
    finally:
        for proc in mesh.envoys.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        if mesh.frontdoor is not None:
            await mesh.frontdoor.stop()
        for proc in mesh.app_processes.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped child dies only once resumed
                    os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        for server in mesh.apps.values():
            await server.stop(0)
        await mesh.http.aclose()


async def _app_process(
    service: str, port: int, data_dir: Path, log: Path
) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.mesh.fake_app",
            service,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={
                **os.environ,
                "SWITCHBOARD_PORT": str(port),
                "SWITCHBOARD_DATA_DIR": str(data_dir),
                "SWITCHBOARD_GRACE_PERIOD_S": "0",
            },
            start_new_session=True,
        )


async def _wait_ready(mesh: Mesh) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    pending = dict(mesh.admin_ports)
    while pending:
        for name, port in list(pending.items()):
            proc = mesh.envoys[name]
            if proc.returncode is not None:
                raise RuntimeError(f"envoy {name} exited: {mesh.logs[name].read_text()[-2000:]}")
            if await is_ready(mesh.http, port):
                del pending[name]
        if loop.time() > deadline:
            raise TimeoutError(f"envoys not ready: {sorted(pending)}")
        await asyncio.sleep(0.05)


async def wait_healthy(mesh: Mesh, cluster: str, count: int, timeout_s: float = 15.0) -> None:
    """Until ``count`` hosts of the edge's ``cluster`` pass active health checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        hosts = (await mesh.edge_hosts()).get(cluster, [])
        healthy = [h for h in hosts if not h[1]]
        if len(healthy) >= count:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"{cluster}: hosts {hosts}")
        await asyncio.sleep(0.05)


async def warm_up(
    mesh: Mesh, call: Callable[[int], Awaitable[object]], method: str, timeout_s: float = 10.0
) -> None:
    """Call until every replica has served ``method`` once.

    ``/clusters`` can show a host healthy up to one health-check interval before the
    worker's load balancer starts picking it; tests that need both replicas wait here.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    i = 0
    while not all(m.state.calls[method] for m in mesh.modules.values()):
        if loop.time() > deadline:
            raise TimeoutError({k: m.state.calls[method] for k, m in mesh.modules.items()})
        await call(i)
        i += 1
        await asyncio.sleep(0.02)
