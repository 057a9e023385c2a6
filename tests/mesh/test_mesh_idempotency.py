"""Resent writes land once: the real context service behind real Envoy.

The context app writes the first AppendMemory and then loses its answer (fails
UNAVAILABLE, as a replica that dies after its commit would). With the key in the
x-switchboard-request-id header the edge resends the call itself; without it the caller
does. The resend carries the same request_id, and the service answers with the first
outcome instead of appending again.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_client import REQUEST_ID_HEADER
from switchboard_server import errors
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.context.module import ContextModule
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from switchboard_server.service import Runtime
from tests.support.mesh_harness import running_mesh, sub_topology, wait_healthy
from tests.support.rich_status import violated_fields


def lossy_context(data_dir: Path) -> tuple[ContextModule, list[str]]:
    """The real context module whose first AppendMemory commits, then fails."""
    runtime = Runtime(
        settings=Settings(core=CoreSettings(data_dir=data_dir)),
        service=ServiceName.CONTEXT,
        metrics=CollectorRegistry(),
        tracer_provider=NoOpTracerProvider(),
    )
    module = ContextModule(runtime)
    servicer = module.servicer
    append = servicer.AppendMemory
    seen: list[str] = []

    async def AppendMemory(request: Any, context: Any) -> ctx_pb.AppendMemoryResponse:
        response = await append(request, context)
        seen.append(request.request_id)
        if len(seen) == 1:
            raise errors.Unavailable("the answer was lost after the write")
        return response

    servicer.AppendMemory = AppendMemory  # type: ignore[method-assign]
    return module, seen


async def test_an_append_resent_with_its_key_through_the_mesh_lands_once(
    topology: Topology, tmp_path: Path
) -> None:
    """The app writes, then the answer is lost (UNAVAILABLE). Without the key in the
    request_id header (here only in the body, as a grpcurl user might send it), Envoy
    does not resend a write that reached an app; the caller resends it with the same key
    and gets the first outcome, and the entry is stored once."""
    module, seen = lossy_context(tmp_path / "context-app")
    topo = sub_topology(topology, {"context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path, apps={"context-0": module}) as mesh:
        await wait_healthy(mesh, "context", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            request = ctx_pb.AppendMemoryRequest(
                session_id="s-retry",
                entries=[ctx_pb.MemoryEntry(type=ctx_pb.MEMORY_TYPE_WORKING, content="hello")],
                request_id=str(uuid.uuid4()),
            )
            with pytest.raises(grpc.aio.AioRpcError) as lost:
                await stub.AppendMemory(request, timeout=5)
            reply = await stub.AppendMemory(request, timeout=5)  # the caller's resend
            stats = await stub.GetMemoryStats(
                ctx_pb.GetMemoryStatsRequest(session_id="s-retry"), timeout=5
            )
        edge = await mesh.edge_stats()
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen == [request.request_id] * 2  # the first try and the resend
    assert edge.get("cluster.context.upstream_rq_retry", 0) == 0  # not resent by Envoy
    assert len(reply.entry_ids) == 1
    assert stats.memory_stats.working_count == 1  # written once


def _append_request(session_id: str, request_id: str) -> ctx_pb.AppendMemoryRequest:
    return ctx_pb.AppendMemoryRequest(
        session_id=session_id,
        entries=[ctx_pb.MemoryEntry(type=ctx_pb.MEMORY_TYPE_WORKING, content="hello")],
        request_id=request_id,
    )


async def test_an_append_with_its_key_in_the_header_is_resent_by_envoy_and_lands_once(
    topology: Topology, tmp_path: Path
) -> None:
    """With the key also in the x-switchboard-request-id header, the edge takes the
    write's keyed route: the lost answer (UNAVAILABLE after the commit) is retried by
    Envoy, the resend gets the first outcome, and the entry is stored once. A header
    that disagrees with the body is refused before anything is written."""
    module, seen = lossy_context(tmp_path / "context-app")
    topo = sub_topology(topology, {"context": 1})
    key = str(uuid.uuid4())
    async with running_mesh(topo, MeshSettings(), tmp_path, apps={"context-0": module}) as mesh:
        await wait_healthy(mesh, "context", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = ctx_grpc.ContextServiceStub(channel)
            refused = []
            for body in ("", str(uuid.uuid4())):  # no body key, another body key
                with pytest.raises(grpc.aio.AioRpcError) as lie:
                    await stub.AppendMemory(
                        _append_request("s-lie", body),
                        metadata=((REQUEST_ID_HEADER, key),),
                        timeout=5,
                    )
                refused.append(lie.value)
            before = await mesh.edge_stats()
            reply = await stub.AppendMemory(
                _append_request("s-keyed", key), metadata=((REQUEST_ID_HEADER, key),), timeout=5
            )
            stats = await stub.GetMemoryStats(
                ctx_pb.GetMemoryStatsRequest(session_id="s-keyed"), timeout=5
            )
            lied = await stub.GetMemoryStats(
                ctx_pb.GetMemoryStatsRequest(session_id="s-lie"), timeout=5
            )
        after = await mesh.edge_stats()
    for exc in refused:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(exc) == ["request_id"]
        assert REQUEST_ID_HEADER in (exc.details() or "")
    assert lied.memory_stats.working_count == 0  # nothing written for a lying header
    retries = "cluster.context.upstream_rq_retry"
    assert before.get(retries, 0) == 0  # INVALID_ARGUMENT is the caller's: not resent
    assert after[retries] - before.get(retries, 0) == 1  # the lost answer, resent by Envoy
    assert seen == [key, key]  # the first try and Envoy's resend
    assert len(reply.entry_ids) == 1
    assert stats.memory_stats.working_count == 1  # written once
