"""Health and reflection through the edge, answered by the front door.

A standard health client (grpc_health's stubs) and reflection clients talk to the
edge Envoy; the answers come from the edge's own view of its clusters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from tests.support.mesh_fakes import CLASSIFICATION, CONTEXT
from tests.support.mesh_harness import Mesh, running_mesh, sub_topology, wait_healthy

pytestmark = pytest.mark.mesh

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _fast(**overrides: Any) -> MeshSettings:
    """Health checking every 0.2 s; the timeout stays generous for a loaded machine."""
    return MeshSettings(
        health_interval_s=0.2,
        health_timeout_s=0.5,
        health_unhealthy_threshold=2,
        health_healthy_threshold=1,
        **overrides,
    )


async def _check(channel: grpc.aio.Channel, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def _statuses(
    channel: grpc.aio.Channel, services: tuple[str, ...] = ("", CLASSIFICATION, CONTEXT)
) -> dict[str, str]:
    return {s: await _check(channel, s) for s in services}


async def _until(
    channel: grpc.aio.Channel, wanted: dict[str, str], timeout_s: float = 20.0
) -> float:
    """Seconds until the edge's health answers are ``wanted``."""
    started = time.monotonic()
    last: dict[str, str] = {}
    while time.monotonic() - started < timeout_s:
        last = await _statuses(channel, tuple(wanted))
        if last == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"health through the edge stayed {last}, wanted {wanted}")


async def _set_all(mesh: Mesh, prefix: str, service: str, status: int) -> None:
    for name, app in mesh.apps.items():
        if name.startswith(prefix):
            await app.health.set(service, status)


async def test_health_through_the_edge_follows_each_service(
    topology: Topology, tmp_path: Path
) -> None:
    """Check answers for every exposed service and overall; a service with no healthy
    replica is NOT_SERVING (and so is ""), the others stay SERVING; Watch streams it,
    for longer than the route timeout of Check and reflection."""
    settings = _fast(ops_timeout_s=1.0)
    topo = sub_topology(topology, {"classification": 2, "context": 1})
    serving = {"": "SERVING", CLASSIFICATION: "SERVING", CONTEXT: "SERVING"}
    down = {"": "NOT_SERVING", CLASSIFICATION: "NOT_SERVING", CONTEXT: "SERVING"}
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 2)
        await wait_healthy(mesh, "context", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            await _until(channel, serving)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _check(channel, "no.such.Service")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            stub = health_pb2_grpc.HealthStub(channel)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=CLASSIFICATION))
            seen: list[int] = []

            async def follow() -> None:
                async for reply in watch:
                    seen.append(reply.status)

            follower = asyncio.create_task(follow())
            try:
                # one replica down: the service still has a routable one
                await mesh.apps["classification-0"].health.set(CLASSIFICATION, NOT_SERVING)
                await wait_healthy(mesh, "classification", 1)
                assert await _statuses(channel) == serving
                await asyncio.sleep(settings.ops_timeout_s)
                await _set_all(mesh, "classification-", CLASSIFICATION, NOT_SERVING)
                went_down_s = await _until(channel, down)
                await _set_all(mesh, "classification-", CLASSIFICATION, SERVING)
                came_back_s = await _until(channel, serving)
                for _ in range(100):
                    if seen[-1:] == [SERVING] and NOT_SERVING in seen:
                        break
                    await asyncio.sleep(0.05)
            finally:
                watch.cancel()
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
    assert seen == [SERVING, NOT_SERVING, SERVING]
    # Envoy marks a host after `unhealthy_threshold` failed checks; the front door
    # looks once per interval: a few intervals, with slack for a loaded machine
    window_s = settings.health_interval_s * (settings.health_unhealthy_threshold + 1)
    window_s += settings.health_timeout_s
    assert went_down_s < window_s + 2.0, went_down_s
    assert came_back_s < window_s + 2.0, came_back_s


async def test_a_killed_replica_set_is_not_serving_then_back(
    topology: Topology, tmp_path: Path
) -> None:
    settings = _fast()
    topo = sub_topology(topology, {"classification": 1, "context": 1})
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "context", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            await _until(channel, {"": "SERVING", CLASSIFICATION: "SERVING", CONTEXT: "SERVING"})
            await mesh.apps["context-0"].stop(0)
            await _until(
                channel, {"": "NOT_SERVING", CLASSIFICATION: "SERVING", CONTEXT: "NOT_SERVING"}
            )


async def test_health_probes_skip_the_edge_rate_limit(topology: Topology, tmp_path: Path) -> None:
    """Probes take no tokens: a busy edge does not fail its own liveness probes."""
    settings = _fast(edge_rate_limit_rps=1, edge_rate_limit_burst=2)
    topo = sub_topology(topology, {"classification": 1})
    async with running_mesh(topo, settings, tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            await _until(channel, {"": "SERVING", CLASSIFICATION: "SERVING"})
            answers = [await _check(channel, CLASSIFICATION) for _ in range(30)]
        stats = await mesh.edge_stats()
    assert answers == ["SERVING"] * 30
    assert stats.get("edge_rate_limit.http_local_rate_limit.rate_limited", 0) == 0


async def _reflect(
    channel: grpc.aio.Channel, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def send() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        for request in requests:
            yield request

    return [reply async for reply in stub.ServerReflectionInfo(send(), timeout=5)]


async def test_reflection_through_the_edge_lists_every_exposed_service(
    topology: Topology, tmp_path: Path
) -> None:
    topo = sub_topology(topology, {"classification": 1, "context": 1})
    async with running_mesh(topo, _fast(), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            listed, described = await _reflect(
                channel,
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="switchboard.context.v1.GetContextRequest"
                ),
            )
    names = {s.name for s in listed.list_services_response.service}
    assert names == {
        CLASSIFICATION,
        CONTEXT,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert described.file_descriptor_response.file_descriptor_proto
