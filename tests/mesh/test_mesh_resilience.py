"""Retries, health checking, ejection and circuit breaking through real Envoy processes.

The apps are in-process fakes serving the real contracts (tests/mesh/fakes.py) behind
their own rendered sidecars; the edge routes to the replicas' sidecars, as in production.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from tests.mesh.fakes import CLASSIFICATION
from tests.mesh.harness import running_mesh, sub_topology, wait_healthy, warm_up

pytestmark = pytest.mark.mesh

# Fast health checking for the ejection test only; the timeout stays generous, as a
# check that times out on a loaded machine would mark a good replica unhealthy.
FAST = {
    "health_interval_s": 0.2,
    "health_timeout_s": 0.5,
    "health_unhealthy_threshold": 2,
    "outlier_interval_s": 0.2,
}


def _classify(stub: cls_grpc.ClassificationServiceStub, i: int) -> grpc.aio.UnaryUnaryCall:
    return stub.Classify(cls_pb.ClassifyRequest(text=f"hello {i}"), timeout=5)


async def test_retries_hide_an_unavailable_replica(topology: Topology, tmp_path: Path) -> None:
    """UNAVAILABLE from a Python handler reaches Envoy trailers-only, so it is retried."""
    topo = sub_topology(topology, {"classification": 2})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 2)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            await warm_up(mesh, lambda i: _classify(stub, i), "Classify")
            mesh.modules["classification-0"].state.mode = "unavailable"
            before = await mesh.edge_stats()
            replies = [await _classify(stub, i) for i in range(40)]
        after = await mesh.edge_stats()
        prometheus = await mesh.http.get(
            f"http://127.0.0.1:{mesh.plan.edge_admin_port}/stats/prometheus"
        )

    assert all(r.classification.intent == "test/echo" for r in replies)
    assert mesh.modules["classification-0"].state.calls["Classify"] > 0
    retried = "cluster.classification.upstream_rq_retry"
    assert after[retried] - before.get(retried, 0) > 0
    # grpc_stats: per-method counters for allowlisted methods only
    method = "cluster.classification.grpc.switchboard.classification.v1.ClassificationService"
    assert after[f"{method}.Classify.success"] >= 40
    assert prometheus.status_code == 200
    assert "envoy_cluster_upstream_rq_retry" in prometheus.text


async def test_writes_are_retried_now_that_they_carry_a_key(
    topology: Topology, tmp_path: Path
) -> None:
    topo = sub_topology(topology, {"context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "context", 1)
        state = mesh.modules["context-0"].state
        state.mode = "unavailable"
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AppendMemory(ctx_pb.AppendMemoryRequest(session_id="s1"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        stats = await mesh.edge_stats()

    # the first try and every retry reached the app (the server deduplicates by request_id)
    assert state.calls["AppendMemory"] == 1 + MeshSettings().retry_attempts
    assert stats["cluster.context.upstream_rq_retry"] >= MeshSettings().retry_attempts


async def _load(
    stub: cls_grpc.ClassificationServiceStub, calls: int, workers: int, pause_s: float
) -> list[str]:
    """Bounded, paced load; returns the status-code names of failed calls."""
    failures: list[str] = []
    queue = iter(range(calls))

    async def worker() -> None:
        for i in queue:
            try:
                await _classify(stub, i)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code().name)
            await asyncio.sleep(pause_s)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return failures


@pytest.mark.parametrize("fault", ["not_serving", "killed"])
async def test_bad_replica_stops_receiving_traffic(
    topology: Topology, tmp_path: Path, fault: str
) -> None:
    """800 calls over ~3 s; after 200 one replica goes bad; no caller notices."""
    settings = MeshSettings(**FAST)
    topo = sub_topology(topology, {"classification": 2})
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 2)
        bad = mesh.modules["classification-0"].state
        good = mesh.modules["classification-1"].state
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            await warm_up(mesh, lambda i: _classify(stub, i), "Classify")
            load = asyncio.create_task(_load(stub, 800, 6, 0.02))
            for _ in range(1000):  # a third of the load has gone through
                if bad.calls["Classify"] + good.calls["Classify"] >= 200:
                    break
                await asyncio.sleep(0.01)
            switched_at = time.monotonic()
            if fault == "not_serving":
                await mesh.apps["classification-0"].health.set(
                    CLASSIFICATION, health_pb2.HealthCheckResponse.NOT_SERVING
                )
            else:
                await mesh.apps["classification-0"].stop(0)
            failures = await load
            finished_at = time.monotonic()
        hosts = (await mesh.edge_hosts())["classification"]

    # unhealthy_threshold failed checks, one interval apart, each within the timeout
    detect_s = (
        settings.health_interval_s * settings.health_unhealthy_threshold + settings.health_timeout_s
    )
    assert failures == []
    # the bad replica's last call came within the detection window (plus slack for a
    # loaded machine), and traffic went on to the good one well after it
    assert bad.last_call_at - switched_at < detect_s + 1.0
    assert good.last_call_at - bad.last_call_at > 0.3
    assert finished_at - switched_at > detect_s + 0.3
    assert good.calls["Classify"] > 400
    assert sum(1 for _, flags, _ in hosts if flags) == 1  # the bad one is marked


async def test_overload_is_refused_fast(topology: Topology, tmp_path: Path) -> None:
    settings = MeshSettings(cb_max_requests=2, cb_max_pending_requests=1)
    topo = sub_topology(topology, {"classification": 1})
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        state = mesh.modules["classification-0"].state
        state.mode, state.slow_s = "slow", 0.6
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)

            async def timed(i: int) -> tuple[str, float]:
                started = time.perf_counter()
                try:
                    await _classify(stub, i)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                return code, time.perf_counter() - started

            results = await asyncio.gather(*(timed(i) for i in range(20)))
        stats = await mesh.edge_stats()

    refused = [t for code, t in results if code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED")]
    assert len(refused) >= 10
    assert max(refused) < 0.3  # the deadline is 5 s; a served call takes 0.6 s
    overflow = sum(
        v
        for k, v in stats.items()
        if k.startswith("cluster.classification.") and k.endswith("_overflow")
    )
    assert overflow >= len(refused)


async def test_edge_rate_limit_answers_resource_exhausted(
    topology: Topology, tmp_path: Path
) -> None:
    settings = MeshSettings(edge_rate_limit_rps=1, edge_rate_limit_burst=2)
    topo = sub_topology(topology, {"classification": 1})
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        codes = []
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            for i in range(6):
                try:
                    await _classify(stub, i)
                    codes.append("OK")
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code().name)
        stats = await mesh.edge_stats()
    assert codes[:2] == ["OK", "OK"]  # the burst
    assert codes.count("RESOURCE_EXHAUSTED") >= 3
    assert stats["edge_rate_limit.http_local_rate_limit.rate_limited"] >= 3
    assert mesh.modules["classification-0"].state.calls["Classify"] == codes.count("OK")


async def test_grpc_timeout_overrides_the_route_timeout(topology: Topology, tmp_path: Path) -> None:
    """AppendMemory's route timeout (0.3 s here) applies only when the caller sets none."""
    context = topology.services["context"]
    short = replace(context.overrides["AppendMemory"], timeout_s=0.3)
    topology = replace(
        topology,
        services={
            **topology.services,
            "context": replace(context, overrides={**context.overrides, "AppendMemory": short}),
        },
    )
    topo = sub_topology(topology, {"context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "context", 1)
        state = mesh.modules["context-0"].state
        state.mode, state.slow_s = "slow", 0.8
        request = ctx_pb.AppendMemoryRequest(session_id="s1")
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            reply = await stub.AppendMemory(request, timeout=5)  # grpc-timeout: 5 s wins
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AppendMemory(request)  # no deadline: the route's 0.3 s
            cut_after = time.perf_counter() - started
    assert list(reply.entry_ids) == ["e1"]
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert cut_after < 0.75
