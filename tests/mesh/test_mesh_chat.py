"""A chat turn through the edge of the real mesh, `buf curl` through it by reflection,
and health and reflection at the edge for every service (the front door).

Runs `switchboard up --detach` with the real services on free ports, then `down`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as orch_grpc
from switchboard_client.cli import main
from tests.support.mesh_up import UpMesh

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
ORCHESTRATION = "switchboard.orchestration.v1.OrchestrationService"
CLASSIFICATION = "switchboard.classification.v1.ClassificationService"
CONTEXT = "switchboard.context.v1.ContextService"


@pytest.fixture(scope="module")
def mesh(shared_mesh: UpMesh) -> UpMesh:
    return shared_mesh


@pytest.fixture(scope="module")
def edge(mesh: UpMesh) -> str:
    return mesh.edge


async def test_a_chat_turn_through_the_edge(mesh: UpMesh) -> None:
    async with grpc.aio.insecure_channel(mesh.edge) as channel:
        stub = orch_grpc.OrchestrationServiceStub(channel)
        reply = await stub.Chat(
            orch_pb.ChatRequest(message="what is my account balance?", session_id="mesh-1"),
            timeout=10,
            metadata=mesh.metadata,
        )
    assert reply.reply
    assert reply.intent.ListFields()  # classified through the classification sidecar
    assert list(reply.degraded) == []  # classification and context both answered


def test_buf_curl_through_the_edge_by_reflection(mesh: UpMesh) -> None:
    edge = mesh.edge
    base = ["--protocol", "grpc", "--http2-prior-knowledge"]
    listed = subprocess.run(
        [str(BUF), "curl", *base, "--list-methods", f"http://{edge}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert f"{ORCHESTRATION}/Chat" in listed.stdout.split()
    called = subprocess.run(
        [
            str(BUF),
            "curl",
            *base,
            "-H",
            f"authorization: Bearer {mesh.token}",
            "-d",
            json.dumps({"message": "hello", "sessionId": "mesh-buf"}),
            f"http://{edge}/{ORCHESTRATION}/Chat",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["reply"]


def _buf_curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_health_through_the_edge_for_every_service(edge: str) -> None:
    with grpc.insecure_channel(edge) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", ORCHESTRATION, CLASSIFICATION, CONTEXT):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=CONTEXT), timeout=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_reflection_through_the_edge_lists_and_describes_every_service(
    mesh: UpMesh, protocol: str
) -> None:
    edge = mesh.edge
    listed = _buf_curl("--reflect-protocol", protocol, "--list-services", f"http://{edge}")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {
        ORCHESTRATION,
        CLASSIFICATION,
        CONTEXT,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    # calling by reflection needs the method described, in that protocol version
    called = _buf_curl(
        "--reflect-protocol",
        protocol,
        "-H",
        f"authorization: Bearer {mesh.token}",
        "-d",
        json.dumps({"text": "wake me up at 7 am"}),
        f"http://{edge}/{CLASSIFICATION}/Classify",
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["classification"]["intent"]


def test_a_v1alpha_client_describes_a_classification_message(edge: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="switchboard.classification.v1.ClassifyRequest"
    )
    with grpc.insecure_channel(edge) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    files = reply.file_descriptor_response.file_descriptor_proto
    assert any(b"ClassifyRequest" in f and b"switchboard.classification.v1" in f for f in files)


def test_kb_finds_the_local_mesh_by_itself(
    mesh: UpMesh, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`switchboard kb` with no address reads the mesh's state file for the context app."""
    data = ROOT / "tests" / "data"
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(mesh.data_dir))
    monkeypatch.delenv("SWITCHBOARD_CONTEXT_TARGET", raising=False)

    def kb(*argv: str) -> object:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(["kb", *argv, "--json"])
        out = capsys.readouterr()
        assert exited.value.code == 0, out.err
        return json.loads(out.out)

    summary = kb("ingest", str(data / "helpcentre"), "--root", str(data))
    assert isinstance(summary, dict)
    assert (summary["added"], summary["skipped"]) == (23, [])
    rows = kb("search", "how do I get a refund?", "-k", "3")
    assert isinstance(rows, list)
    assert "helpcentre.billing.invoices.md:refunds" in [r["document_id"] for r in rows]
