"""The real mesh (`switchboard up --detach`, mTLS on by default): certificates rotate
under a steady load of Chats without a failed call and every Envoy serves the new ones;
Envoy admin ports listen on loopback only; `switchboard status` probes every app
through its sidecar as the operator.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509

from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as orch_grpc
from switchboard_server.mesh.security.certs import CA_CERT, TLS_CERT, TLS_KEY
from tests.support.mesh_up import UpMesh

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).parents[2]
CHAT_INTERVAL_S = 0.1
LOAD_S = 8.0
ROTATE_AT_S = 2.0


@pytest.fixture(scope="module")
def mesh(shared_mesh: UpMesh) -> UpMesh:
    """The shared mesh: a rotation that fails no call disturbs no other test either."""
    return shared_mesh


def _state(mesh: UpMesh) -> dict[str, object]:
    state: dict[str, object] = json.loads((mesh.data_dir / "mesh" / "state.json").read_text())
    return state


def _admin_ports(mesh: UpMesh) -> dict[str, int]:
    processes = _state(mesh)["processes"]
    assert isinstance(processes, list)
    return {
        p["name"]: int(p["endpoints"]["admin"].rsplit(":", 1)[1])
        for p in processes
        if "admin" in p["endpoints"]
    }


def _sidecar_port(mesh: UpMesh, name: str) -> int:
    processes = _state(mesh)["processes"]
    assert isinstance(processes, list)
    grpc_endpoint = next(p for p in processes if p["name"] == name)["endpoints"]["grpc"]
    return int(grpc_endpoint.rsplit(":", 1)[1])


def _cli(mesh: UpMesh, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(mesh.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "switchboard_server.mesh", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _serial(identity: Path) -> int:
    return x509.load_pem_x509_certificate((identity / TLS_CERT).read_bytes()).serial_number


def _envoy_serials(admin_port: int) -> set[int]:
    """Serial numbers of the certificates an Envoy serves (admin /certs)."""
    doc = httpx.get(f"http://127.0.0.1:{admin_port}/certs", timeout=2).json()
    return {
        int(cert["serial_number"], 16)
        for entry in doc.get("certificates", [])
        for cert in entry.get("cert_chain", [])
    }


def _presented_serial(port: int, operator: Path) -> int:
    """The serial of the certificate a sidecar presents to a new TLS connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(operator / CA_CERT)
    context.load_cert_chain(operator / TLS_CERT, operator / TLS_KEY)
    context.check_hostname = False  # workload certificates name services, not 127.0.0.1
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotation_under_a_steady_load_of_chats(mesh: UpMesh) -> None:
    certs = mesh.data_dir / "mesh" / "certs"
    old = {name: _serial(certs / name) for name in ("edge", "orchestration", "classification")}
    codes: list[str] = []

    async def load() -> None:
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = orch_grpc.OrchestrationServiceStub(channel)
            loop = asyncio.get_running_loop()
            end = loop.time() + LOAD_S
            i = 0
            while loop.time() < end:
                request = orch_pb.ChatRequest(message="what is my balance?", session_id=f"r{i}")
                try:
                    reply = await stub.Chat(request, timeout=10, metadata=mesh.metadata)
                    codes.append("OK" if not reply.degraded else "DEGRADED")
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code().name)
                i += 1
                await asyncio.sleep(CHAT_INTERVAL_S)

    async def rotate() -> subprocess.CompletedProcess[str]:
        await asyncio.sleep(ROTATE_AT_S)
        return await asyncio.to_thread(_cli, mesh, "certs", "rotate")

    _, rotated = await asyncio.gather(load(), rotate())
    assert rotated.returncode == 0, rotated.stderr
    assert len(codes) >= 20
    assert set(codes) == {"OK"}, codes

    new = {name: _serial(certs / name) for name in old}
    assert all(new[name] != old[name] for name in old)
    admins = _admin_ports(mesh)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        served = {
            "edge": _envoy_serials(admins["edge"]),
            "orchestration": _envoy_serials(admins["orchestration-0.sidecar"]),
            "classification": _envoy_serials(admins["classification-0.sidecar"]),
        }
        if all(new[name] in served[name] for name in new):
            break
        await asyncio.sleep(0.2)
    assert all(new[name] in served[name] for name in new), (new, served)
    assert all(old[name] not in served[name] for name in old)
    port = _sidecar_port(mesh, "orchestration-0.sidecar")
    assert _presented_serial(port, certs / "operator") == new["orchestration"]


def test_envoy_admin_ports_listen_on_loopback_only(mesh: UpMesh) -> None:
    ports = set(_admin_ports(mesh).values())
    assert len(ports) >= 4  # the edge and three sidecars
    listening: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in ports:  # LISTEN
                listening.setdefault(int(port, 16), set()).add(address)
    assert set(listening) == ports
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    assert all(addresses <= loopback for addresses in listening.values()), listening


def test_status_probes_every_app_through_its_sidecar_over_mtls(mesh: UpMesh) -> None:
    status = _cli(mesh, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    health = {p["name"]: p["health"] for p in json.loads(status.stdout)["processes"]}
    assert health["classification-0"] == "SERVING"
    assert health["orchestration-0"] == "SERVING"
