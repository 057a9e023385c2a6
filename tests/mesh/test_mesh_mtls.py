"""Mutual TLS and RBAC between real Envoys: who may reach a sidecar's public port, and
which methods each identity may call there (docs/security.md).

The mesh here is classification and context (fake apps) behind their sidecars and the
edge, rendered with mTLS; the tests dial the sidecars' public ports directly, as
another workload (or an attacker on the network) would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_client import ErrorReason, PermissionDenied, from_rpc_error
from switchboard_server.mesh.envoy import counters
from switchboard_server.mesh.peer import secure_channel
from switchboard_server.mesh.security.certs import CertPolicy, CertStore
from switchboard_server.mesh.security.mtls import REASON_CALLER, REASON_OPERATOR
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from tests.support.mesh_harness import Mesh, running_mesh, sub_topology, wait_healthy
from tests.support.rich_status import error_details

pytestmark = pytest.mark.mesh

CLASSIFY = cls_pb.ClassifyRequest(text="hello")


@pytest.fixture
async def mesh(topology: Topology, tmp_path: Path) -> AsyncIterator[Mesh]:
    topo = sub_topology(topology, {"classification": 1, "context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        await wait_healthy(mesh, "context", 1)
        yield mesh


def _sidecar(mesh: Mesh, service: str) -> str:
    return f"127.0.0.1:{mesh.plan.replicas[service][0].sidecar_port}"


def _identity(mesh: Mesh, name: str) -> Path:
    assert mesh.tls is not None
    return mesh.tls.certs_dir / name


async def _rbac(mesh: Mesh, service: str) -> dict[str, int]:
    stats = await counters(mesh.http, mesh.admin_ports[f"{service}-0.sidecar"])
    return {k.rsplit(".", 1)[1]: v for k, v in stats.items() if k.startswith("http.ingress.rbac.")}


async def test_a_plaintext_connection_to_a_sidecar_fails(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(_sidecar(mesh, "classification")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await cls_grpc.ClassificationServiceStub(channel).Classify(CLASSIFY, timeout=3)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sum(m.state.calls["Classify"] for m in mesh.modules.values()) == 0


async def test_a_client_certificate_from_another_ca_fails(mesh: Mesh, tmp_path: Path) -> None:
    settings = MeshSettings()
    policy = CertPolicy(
        settings.trust_domain,  # the same names, another CA
        settings.namespace,
        dt.timedelta(hours=1),
        dt.timedelta(days=1),
        0.5,
    )
    other = CertStore(tmp_path / "other-ca", policy)
    other.ensure(["operator"])
    # The client trusts the mesh CA (so only its own certificate is foreign).
    (other.root / "operator" / "..data" / "ca.crt").write_bytes(
        (_identity(mesh, "operator") / "ca.crt").read_bytes()
    )
    target = _sidecar(mesh, "context")
    async with secure_channel(target, other.root / "operator", "context") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ctx_grpc.ContextServiceStub(channel).ClearMemory(
                ctx_pb.ClearMemoryRequest(session_id="s"), timeout=3
            )
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    stats = await counters(mesh.http, mesh.admin_ports["context-0.sidecar"])
    failed = sum(v for k, v in stats.items() if k.endswith(".ssl.fail_verify_error"))
    assert failed >= 1
    assert mesh.modules["context-0"].state.calls["ClearMemory"] == 0


async def test_a_valid_certificate_of_the_wrong_service_is_denied(mesh: Mesh) -> None:
    """context may not call classification (nothing in the topology says so)."""
    before = await _rbac(mesh, "classification")
    target = _sidecar(mesh, "classification")
    async with secure_channel(target, _identity(mesh, "context"), "classification") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await cls_grpc.ClassificationServiceStub(channel).Classify(CLASSIFY, timeout=3)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _ = error_details(exc.value)
    assert (info.reason, info.domain) == (REASON_CALLER, "switchboard.dev")
    assert info.metadata["service"] == "classification"
    typed = from_rpc_error(exc.value)  # what a typed client raises
    assert isinstance(typed, PermissionDenied)
    assert typed.reason == ErrorReason.CALLER_NOT_ALLOWED
    after = await _rbac(mesh, "classification")
    assert after["denied"] == before.get("denied", 0) + 1
    assert mesh.modules["classification-0"].state.calls["Classify"] == 0


async def test_the_edge_may_call_what_it_routes_but_no_admin_method(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(mesh.edge) as channel:
        reply = await cls_grpc.ClassificationServiceStub(channel).Classify(CLASSIFY, timeout=3)
        assert reply.classification.intent == "test/echo"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ctx_grpc.ContextServiceStub(channel).ClearMemory(
                ctx_pb.ClearMemoryRequest(session_id="s"), timeout=3
            )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _ = error_details(exc.value)
    assert info.reason == REASON_OPERATOR
    assert mesh.modules["context-0"].state.calls["ClearMemory"] == 0


async def test_admin_methods_need_the_operator_identity(mesh: Mesh) -> None:
    target = _sidecar(mesh, "context")
    request = ctx_pb.ClearMemoryRequest(session_id="s")
    before = await _rbac(mesh, "context")
    async with secure_channel(target, _identity(mesh, "classification"), "context") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ctx_grpc.ContextServiceStub(channel).ClearMemory(request, timeout=3)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(exc.value)[0].reason == REASON_OPERATOR
    async with secure_channel(target, _identity(mesh, "operator"), "context") as channel:
        reply = await ctx_grpc.ContextServiceStub(channel).ClearMemory(request, timeout=3)
    assert reply.deleted_count == 1
    assert mesh.modules["context-0"].state.calls["ClearMemory"] == 1
    after = await _rbac(mesh, "context")
    assert after["denied"] == before.get("denied", 0) + 1
    assert after["allowed"] > before.get("allowed", 0)


async def test_health_and_reflection_stay_open_to_every_mesh_identity(mesh: Mesh) -> None:
    target = _sidecar(mesh, "classification")
    async with secure_channel(target, _identity(mesh, "context"), "classification") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=3
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [r async for r in stub.ServerReflectionInfo(iter([request]), timeout=3)]
    names = {s.name for s in replies[0].list_services_response.service}
    assert "switchboard.classification.v1.ClassificationService" in names


async def test_a_sidecar_checks_the_callee_it_reaches_is_who_the_topology_says(
    mesh: Mesh,
) -> None:
    """The edge's clusters accept only the callee's SPIFFE id: its health checks pass
    (the hosts are healthy) and every upstream handshake verified."""
    stats = await mesh.edge_stats()
    assert stats["cluster.classification.ssl.handshake"] >= 1
    assert stats.get("cluster.classification.ssl.fail_verify_san", 0) == 0
    assert stats["cluster.classification.health_check.success"] >= 1
