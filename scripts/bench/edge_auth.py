"""What the authenticated edge costs: edge Envoy CPU and latency per call, with the JWT
check and the per-client limit (``auth``) and without them (``open``), side by side.

Two edge Envoys rendered from the same plan (classification only) route to one
in-process echo server (health and ``Classify``), so the figure is Envoy's own work.
Every call carries the same ES256 token (the ``open`` edge ignores it). Rounds
alternate between the two edges; each round sends CALLS calls, CONCURRENCY at a time.
Run: ``python -m scripts.bench edge_auth``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2

from scripts.bench._proc import StolenTime, cpu_seconds
from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.mesh.envoy import envoy_command, is_ready
from switchboard_server.mesh.render import render_edge, write_configs
from switchboard_server.mesh.security.tokens import DevAuth, ensure_keys, mint
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology, load_topology, make_plan
from switchboard_server.standard_services import add_health
from switchboard_server.testing import PortPool

CALLS = 2000
WARMUP = 200
CONCURRENCY = 16
ROUNDS = 3
SERVICE = "switchboard.classification.v1.ClassificationService"


class _Echo(pb_grpc.ClassificationServiceServicer):
    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClassifyResponse:
        return pb.ClassifyResponse(classification=pb.Classification(intent="echo/x"))


async def _backend(port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    pb_grpc.add_ClassificationServiceServicer_to_server(_Echo(), server)  # type: ignore[abstract]
    checker = add_health(server)
    await checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def _round(target: str, token: str, calls: int) -> tuple[list[float], int]:
    """Latencies (ms) of ``calls`` Classify calls and how many failed."""
    latencies: list[float] = []
    failed = 0
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        left = iter(range(calls))

        async def worker() -> None:
            nonlocal failed
            for _ in left:
                started = time.perf_counter()
                try:
                    await stub.Classify(
                        pb.ClassifyRequest(text="hello"), metadata=metadata, timeout=5
                    )
                except grpc.aio.AioRpcError:
                    failed += 1
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies, failed


async def _measure(tmp: Path) -> dict[str, Any]:
    topology = load_topology(None)
    kept = {"classification": topology.services["classification"]}
    topo = Topology(services=kept, edge_routes=("classification",)).with_replicas(
        {"classification": 1}
    )
    auth = DevAuth.under(tmp)
    key = ensure_keys(auth)
    # no limit of its own in the way: the per-client bucket is checked, never empty
    base = MeshSettings(edge_rate_limit_rps=0, edge_client_rate_limit_rps=1_000_000)
    settings = {
        "auth": base.model_copy(update={"edge_jwks_file": auth.jwks_path}),
        "open": base,
    }
    token = mint(key, subject="bench", ttl_s=3600, issuer=base.edge_jwt_issuer,
                 audience=base.edge_jwt_audience)  # fmt: skip
    ports = PortPool()
    plan = make_plan(topo, base, ports)
    backend = await _backend(plan.all_replicas()[0].sidecar_port)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    targets: dict[str, str] = {}
    try:
        async with httpx.AsyncClient() as http:
            for name, mesh in settings.items():
                edge_plan = dataclasses.replace(
                    plan, edge_port=ports(), edge_admin_port=ports(), frontdoor_port=ports()
                )
                path = write_configs({name: render_edge(edge_plan, mesh)}, tmp)[name]
                procs[name] = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                    envoy_command(path, mesh),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={"SWITCHBOARD_ENVOY_NAME": name},
                )
                deadline = time.monotonic() + 30
                while not await is_ready(http, edge_plan.edge_admin_port):
                    if time.monotonic() > deadline or procs[name].poll() is not None:
                        raise RuntimeError(f"edge {name} did not start")
                    await asyncio.sleep(0.1)
                targets[name] = f"127.0.0.1:{edge_plan.edge_port}"
        for target in targets.values():
            for _ in range(100):  # until the edge's health check passed
                _, failed = await _round(target, token, 20)
                if not failed:
                    break
                await asyncio.sleep(0.1)
            await _round(target, token, WARMUP)
        stolen = StolenTime()
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        latency: dict[str, list[float]] = {name: [] for name in targets}
        failures = dict.fromkeys(targets, 0)
        for _ in range(ROUNDS):
            for name, target in targets.items():
                before = cpu_seconds(procs[name].pid)
                latencies, failed = await _round(target, token, CALLS)
                cpu[name].append((cpu_seconds(procs[name].pid) - before) / CALLS * 1e6)
                latency[name].append(statistics.median(latencies))
                failures[name] += failed
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        await backend.stop(0)
    figures: dict[str, Any] = {
        name: {
            "edge_cpu_us_per_call_median": round(statistics.median(cpu[name]), 1),
            "latency_ms_p50_median": round(statistics.median(latency[name]), 3),
            "failed": failures[name],
        }
        for name in targets
    }
    figures["cpu_ratio_auth_over_open"] = round(
        figures["auth"]["edge_cpu_us_per_call_median"]
        / figures["open"]["edge_cpu_us_per_call_median"],
        3,
    )
    figures["calls_per_round"], figures["rounds"] = CALLS, ROUNDS
    figures["concurrency"], figures["stolen_share"] = CONCURRENCY, stolen.share()
    return figures


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_measure(Path(tmp)))
