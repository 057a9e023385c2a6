"""The front door on a real socket: NOT_SERVING until it has seen the edge, the
edge's view once it has, and NOT_SERVING for good from the drain on."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard_server.frontdoor.server import create_frontdoor

CLASSIFICATION = "switchboard.classification.v1.ClassificationService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTHY_EDGE: dict[str, Any] = {
    "cluster_statuses": [
        {
            "name": "classification",
            "host_statuses": [
                {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                    "health_status": {"eds_health_status": "HEALTHY"},
                }
            ],
        }
    ]
}


async def _check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def test_not_serving_until_the_first_look_then_the_edges_view_then_drained() -> None:
    edge_answers = asyncio.Event()

    async def admin(request: httpx.Request) -> httpx.Response:
        await edge_answers.wait()
        return httpx.Response(200, json=HEALTHY_EDGE)

    frontdoor, port = await create_frontdoor(
        {CLASSIFICATION: "classification"},
        9901,
        "127.0.0.1:0",
        interval_s=0.05,
        grace_s=0.5,
        client=httpx.AsyncClient(transport=httpx.MockTransport(admin)),
    )
    await frontdoor.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert await _check(stub, "") == NOT_SERVING
            assert await _check(stub, CLASSIFICATION) == NOT_SERVING

            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            seen = [(await watch.read()).status]
            edge_answers.set()
            seen.append((await asyncio.wait_for(watch.read(), 5)).status)
            assert await _check(stub, CLASSIFICATION) == SERVING

            stopping = asyncio.create_task(frontdoor.stop())
            seen.append((await asyncio.wait_for(watch.read(), 5)).status)
            await stopping
    finally:
        await frontdoor.stop(0)
    assert seen == [NOT_SERVING, SERVING, NOT_SERVING]
