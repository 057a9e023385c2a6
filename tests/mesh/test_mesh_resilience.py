"""Retries, health checking, ejection and circuit breaking through real Envoy processes.

The apps are in-process fakes serving the real contracts (tests/support/mesh_fakes.py) behind
their own rendered sidecars; the edge routes to the replicas' sidecars, as in production.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_client import REQUEST_ID_HEADER
from switchboard_server.mesh.envoy import counters
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from tests.support.mesh_fakes import CLASSIFICATION
from tests.support.mesh_harness import Mesh, running_mesh, sub_topology, wait_healthy, warm_up

pytestmark = pytest.mark.mesh

# Fast health checking for the ejection test only; the timeout stays generous, as a
# check that times out on a loaded machine would mark a good replica unhealthy.
FAST: dict[str, Any] = {
    "health_interval_s": 0.2,
    "health_timeout_s": 0.5,
    "health_unhealthy_threshold": 2,
    "outlier_interval_s": 0.2,
}


def _classify(
    stub: cls_grpc.ClassificationServiceAsyncStub, i: int
) -> grpc.aio.UnaryUnaryCall[cls_pb.ClassifyRequest, cls_pb.ClassifyResponse]:
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


async def test_append_memory_is_never_retried(topology: Topology, tmp_path: Path) -> None:
    topo = sub_topology(topology, {"context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "context", 1)
        state = mesh.modules["context-0"].state
        state.mode = "unavailable"
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.AppendMemory(ctx_pb.AppendMemoryRequest(session_id="s1"), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            append_retries = (await mesh.edge_stats()).get("cluster.context.upstream_rq_retry", 0)
            # The same failure on an idempotent method is retried: the policy is live.
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetContext(ctx_pb.GetContextRequest(session_id="s1"), timeout=5)
        stats = await mesh.edge_stats()

    assert state.calls["AppendMemory"] == 3
    assert append_retries == 0
    assert state.calls["GetContext"] > 1
    assert stats["cluster.context.upstream_rq_retry"] > 0


async def _append(
    stub: ctx_grpc.ContextServiceAsyncStub, session: str
) -> ctx_pb.AppendMemoryResponse:
    return await stub.AppendMemory(ctx_pb.AppendMemoryRequest(session_id=session), timeout=5)


async def test_a_write_its_app_never_got_is_retried_and_lands_once(
    topology: Topology, tmp_path: Path
) -> None:
    """One context app stops while its sidecar runs: the sidecar cannot connect (UF) and
    marks its reply, the edge sends the AppendMemory to the other replica; each write
    lands exactly once."""
    topo = sub_topology(topology, {"context": 2})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "context", 2)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            await warm_up(mesh, lambda i: _append(stub, f"warm-{i}"), "AppendMemory")
            await mesh.apps["context-0"].stop(0)  # the port closes; the sidecar stays up
            before = await mesh.edge_stats()
            sessions = [f"s{i}" for i in range(30)]
            replies = [await _append(stub, session) for session in sessions]
        after = await mesh.edge_stats()
        stopped_sidecar = await counters(mesh.http, mesh.admin_ports["context-0.sidecar"])

    good = mesh.modules["context-1"].state
    bad = mesh.modules["context-0"].state
    assert all(list(r.entry_ids) == ["e1"] for r in replies)
    assert [good.appended[s] for s in sessions] == [1] * len(sessions)
    assert not any(bad.appended[s] for s in sessions)
    # the stopped replica's sidecar was tried and could not connect to its app
    assert stopped_sidecar["cluster.local_app.upstream_cx_connect_fail"] >= 1
    retried = "cluster.context.upstream_rq_retry"
    assert after[retried] - before.get(retried, 0) >= 1


async def _load(
    stub: cls_grpc.ClassificationServiceAsyncStub, calls: int, workers: int, pause_s: float
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


async def _host_requests(mesh: Mesh, cluster: str) -> dict[int, int]:
    """Requests the edge sent to each host of ``cluster`` (by sidecar port)."""
    response = await mesh.http.get(
        f"http://127.0.0.1:{mesh.plan.edge_admin_port}/clusters?format=json", timeout=2
    )
    result = {}
    for status in response.json()["cluster_statuses"]:
        if status["name"] != cluster:
            continue
        for host in status["host_statuses"]:
            port = host["address"]["socket_address"]["port_value"]
            stats = {s["name"]: int(s.get("value", 0)) for s in host["stats"]}
            result[port] = stats.get("rq_total", 0)
    return result


async def test_a_hung_replica_is_ejected_within_a_second(
    topology: Topology, tmp_path: Path
) -> None:
    """SIGSTOP one classification app (its sidecar keeps accepting): with the default
    settings, a try to it times out after Classify's per-try timeout and is retried on
    the other replica, and outlier detection ejects it after a few such timeouts, well
    before active health checking would. Every call succeeds."""
    settings = MeshSettings()
    topo = sub_topology(topology, {"classification": 2})
    async with running_mesh(topo, settings, tmp_path, processes={"classification-0"}) as mesh:
        await wait_healthy(mesh, "classification", 2)
        hung_port = mesh.plan.replicas["classification"][0].sidecar_port
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            for i in range(200):  # until the edge has sent calls to both replicas
                await _classify(stub, i)
                sent = await _host_requests(mesh, "classification")
                if len(sent) == 2 and all(sent.values()):
                    break
            before = await mesh.edge_stats()
            calls: list[tuple[float, float, str]] = []  # (start, latency, code)
            ejected_at: list[float] = []

            async def worker(n: int) -> None:
                end = time.monotonic() + 3.0
                while time.monotonic() < end:
                    started = time.monotonic()
                    try:
                        await _classify(stub, n)
                        code = "OK"
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code().name
                    calls.append((started, time.monotonic() - started, code))
                    await asyncio.sleep(0.02)

            async def watch() -> None:
                while not ejected_at:
                    for address, flags, _ in (await mesh.edge_hosts())["classification"]:
                        if address.endswith(f":{hung_port}") and "failed_outlier_check" in flags:
                            ejected_at.append(time.monotonic())
                    await asyncio.sleep(0.02)

            os.kill(mesh.app_processes["classification-0"].pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            watcher = asyncio.create_task(watch())
            await asyncio.gather(*(worker(n) for n in range(8)))
            watcher.cancel()
            after = await mesh.edge_stats()

    per_try = 0.4  # Classify's per_try_timeout_s in the topology
    ejections = "cluster.classification.outlier_detection.ejections_enforced_total"
    assert after[ejections] - before.get(ejections, 0) >= 1
    assert [code for _, _, code in calls if code != "OK"] == []
    assert ejected_at, "the hung replica was never ejected by outlier detection"
    # ejected within a second of its first timed-out try (plus slack for a loaded machine)
    assert ejected_at[0] - stopped_at < per_try + 1.0
    slow = [latency for _, latency, _ in calls if latency >= per_try]
    assert slow  # some tries went to the hung replica and were retried
    # after the ejection, calls go straight to the good replica (the load balancer sees
    # the ejection at once: update_merge_window 0)
    late = [latency for started, latency, _ in calls if started > ejected_at[0] + 0.1]
    assert len(late) > 50
    assert max(late) < per_try


async def _keyed_append(
    stub: ctx_grpc.ContextServiceAsyncStub, session: str
) -> ctx_pb.AppendMemoryResponse:
    """An AppendMemory with its key in the body and in the request_id header."""
    key = str(uuid.uuid4())
    request = ctx_pb.AppendMemoryRequest(session_id=session, request_id=key)
    return await stub.AppendMemory(request, metadata=((REQUEST_ID_HEADER, key),), timeout=5)


async def test_keyed_appends_leave_a_hung_replica_within_a_try(
    topology: Topology, tmp_path: Path
) -> None:
    """SIGSTOP one of two context apps. A keyed AppendMemory sent to it is cut after its
    0.5 s per-try timeout and resent to the other replica (a keyless one would wait out
    its 2 s timeout and fail), and outlier detection ejects the hung replica. Every
    call succeeds, lands once, and takes about one try at most."""
    topo = sub_topology(topology, {"context": 2})
    async with running_mesh(topo, MeshSettings(), tmp_path, processes={"context-0"}) as mesh:
        await wait_healthy(mesh, "context", 2)
        hung_port = mesh.plan.replicas["context"][0].sidecar_port
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            for i in range(200):  # until the edge has sent calls to both replicas
                await _keyed_append(stub, f"warm-{i}")
                sent = await _host_requests(mesh, "context")
                if len(sent) == 2 and all(sent.values()):
                    break
            before = await mesh.edge_stats()
            calls: list[tuple[str, float, float, str]] = []  # (session, start, latency, code)
            ejected_at: list[float] = []

            async def worker(n: int) -> None:
                end = time.monotonic() + 3.0
                while time.monotonic() < end:
                    session = f"s-{n}-{len(calls)}"
                    started = time.monotonic()
                    try:
                        await _keyed_append(stub, session)
                        code = "OK"
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code().name
                    calls.append((session, started, time.monotonic() - started, code))
                    await asyncio.sleep(0.02)

            async def watch() -> None:
                while not ejected_at:
                    for address, flags, _ in (await mesh.edge_hosts())["context"]:
                        if address.endswith(f":{hung_port}") and "failed_outlier_check" in flags:
                            ejected_at.append(time.monotonic())
                    await asyncio.sleep(0.02)

            os.kill(mesh.app_processes["context-0"].pid, signal.SIGSTOP)
            watcher = asyncio.create_task(watch())
            await asyncio.gather(*(worker(n) for n in range(8)))
            watcher.cancel()
            after = await mesh.edge_stats()
        good = mesh.modules["context-1"].state

    per_try = 0.5  # AppendMemory's per_try_timeout_s in the topology
    assert [code for *_, code in calls if code != "OK"] == []
    assert [good.appended[session] for session, *_ in calls] == [1] * len(calls)  # once each
    slow = [latency for _, _, latency, _ in calls if latency >= per_try]
    assert slow  # some tries went to the hung replica and were resent
    assert max(slow) < per_try + 0.75  # one cut try plus back-off, not the 2 s timeout
    retried = "cluster.context.upstream_rq_retry"
    assert after[retried] - before.get(retried, 0) >= len(slow)
    assert ejected_at, "the hung replica was never ejected by outlier detection"
    late = [latency for _, started, latency, _ in calls if started > ejected_at[0] + 0.1]
    assert late
    assert max(late) < per_try


async def test_overload_is_refused_fast(topology: Topology, tmp_path: Path) -> None:
    settings = MeshSettings(cb_max_requests=2, cb_max_pending_requests=1)
    topo = sub_topology(topology, {"classification": 1})
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        state = mesh.modules["classification-0"].state
        state.mode, state.slow_s = "slow", 0.3  # under Classify's 0.4 s per-try timeout
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
    assert max(refused) < 0.2  # the deadline is 5 s; a served call takes 0.3 s
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
