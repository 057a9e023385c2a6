"""The authenticated edge through real Envoy: JWT on every call, open health and
reflection, a token bucket per client, the same refusals for gRPC, gRPC-Web and REST.

One mesh for the module: the edge and a classification sidecar in front of a fake
classification app; the edge trusts the JWKS of a development key made here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard_client import ClassificationClient, ConnectConfig, PermissionDenied, Unavailable
from switchboard_server.mesh.envoy import counters
from switchboard_server.mesh.security.edge_auth import (
    CLIENT_HEADER,
    ERROR_DOMAIN,
    REASON_CLIENT_RATE_LIMITED,
)
from switchboard_server.mesh.security.tokens import DevAuth, ensure_keys, mint, write_private
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from tests.support.grpc_web import call as grpc_web_call
from tests.support.mesh_fakes import CLASSIFICATION
from tests.support.mesh_harness import Mesh, running_mesh, sub_topology, wait_healthy
from tests.support.rich_status import error_details, trailing_metadata

pytestmark = [pytest.mark.mesh, pytest.mark.asyncio(loop_scope="module")]

CLASSIFY = f"/{CLASSIFICATION}/Classify"
BURST = 5
ISSUER, AUDIENCE = "switchboard-dev", "switchboard"


class Edge:
    def __init__(self, mesh: Mesh, key: ec.EllipticCurvePrivateKey) -> None:
        self.mesh = mesh
        self.key = key

    def token(self, subject: str, *, ttl_s: int = 600, **overrides: object) -> str:
        claims: dict[str, object] = {
            "subject": subject,
            "ttl_s": ttl_s,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "key": self.key,
        }
        claims.update(overrides)
        key = claims.pop("key")
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return mint(key, **claims)  # type: ignore[arg-type]

    async def classify(self, token: str | None) -> cls_pb.ClassifyResponse:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        async with grpc.aio.insecure_channel(self.mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            reply: cls_pb.ClassifyResponse = await stub.Classify(
                cls_pb.ClassifyRequest(text="hello"), metadata=metadata, timeout=5
            )
        return reply


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge(topology: Topology, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge-auth")
    auth = DevAuth.under(tmp / "data")
    key = ensure_keys(auth)
    settings = MeshSettings(
        edge_jwks_file=auth.jwks_path,
        edge_client_rate_limit_rps=1,
        edge_client_rate_limit_burst=BURST,
        health_interval_s=0.2,
    )
    async with running_mesh(sub_topology(topology, {"classification": 1}), settings, tmp) as mesh:
        await wait_healthy(mesh, "classification", 1)
        yield Edge(mesh, key)


async def _refused(edge: Edge, token: str | None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edge.classify(token)
    return err.value


def _edge_reason(exc: grpc.aio.AioRpcError) -> str:
    info, _ = error_details(exc)
    assert info.domain == ERROR_DOMAIN
    return str(info.reason)


async def test_a_valid_token_is_served(edge: Edge) -> None:
    reply = await edge.classify(edge.token("ok-client"))
    assert reply.classification.intent == "test/echo"


@pytest.mark.parametrize(
    "case", ["missing", "expired", "other-key", "wrong-audience", "wrong-issuer", "garbage"]
)
async def test_a_bad_or_missing_token_is_unauthenticated(edge: Edge, case: str) -> None:
    stats_before = await counters(edge.mesh.http, edge.mesh.admin_ports["edge"])
    app = edge.mesh.modules["classification-0"].state
    served_before = app.calls["Classify"]
    tokens = {
        "missing": None,
        "expired": edge.token("c", now=time.time() - 3600, ttl_s=600),
        "other-key": edge.token("c", key=ec.generate_private_key(ec.SECP256R1())),
        "wrong-audience": edge.token("c", audience="someone-else"),
        "wrong-issuer": edge.token("c", issuer="https://evil.example.net"),
        "garbage": "not.a.jwt",
    }
    exc = await _refused(edge, tokens[case])
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc.details()
    reason = {"missing": "TOKEN_MISSING", "expired": "TOKEN_EXPIRED"}.get(case, "TOKEN_INVALID")
    assert _edge_reason(exc) == reason
    stats = await counters(edge.mesh.http, edge.mesh.admin_ports["edge"])
    denied = "http.edge.jwt_authn.denied"
    assert stats[denied] == stats_before.get(denied, 0) + 1
    assert app.calls["Classify"] == served_before  # refused at the edge


async def test_the_app_gets_the_subject_not_the_token(edge: Edge) -> None:
    await edge.classify(edge.token("subject-seen"))
    seen = edge.mesh.modules["classification-0"].state.last_metadata
    assert seen.get(CLIENT_HEADER) == "subject-seen"
    assert "authorization" not in seen


async def test_the_typed_client_sends_its_token(edge: Edge) -> None:
    config = ConnectConfig(edge.mesh.edge, token=edge.token("typed-client"))
    async with ClassificationClient(config) as client:
        verdict = await client.classify("hello")
    assert verdict.intent == "test/echo"
    async with ClassificationClient(ConnectConfig(edge.mesh.edge)) as client:
        with pytest.raises(PermissionDenied) as err:
            await client.classify("hello")
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.reason == "TOKEN_MISSING"


async def test_health_and_reflection_need_no_token(edge: Edge) -> None:
    async with grpc.aio.insecure_channel(edge.mesh.edge) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request_ = health_pb2.HealthCheckRequest(service=CLASSIFICATION)
        # answered (not refused) at once; SERVING once the front door has looked
        for _ in range(100):
            reply = await health.Check(request_, timeout=5)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = [a async for a in reflection.ServerReflectionInfo(iter([request]), timeout=5)]
    names = {s.name for s in answers[0].list_services_response.service}
    assert CLASSIFICATION in names


async def test_rest_without_a_token_is_401_with_a_json_status(edge: Edge) -> None:
    url = f"http://{edge.mesh.edge}/v1/intents:classify"
    async with httpx.AsyncClient() as http:
        refused = await http.post(url, json={"text": "hello"}, timeout=5)
        served = await http.post(
            url,
            json={"text": "hello"},
            headers={"authorization": f"Bearer {edge.token('rest-client')}"},
            timeout=5,
        )
    assert refused.status_code == 401
    assert refused.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "Jwt" in refused.json()["message"]
    assert served.status_code == 200, served.text
    assert served.json()["classification"]["intent"] == "test/echo"


async def test_grpc_web_without_a_token_is_unauthenticated(edge: Edge) -> None:
    async with httpx.AsyncClient() as http:
        base = f"http://{edge.mesh.edge}"
        request = cls_pb.ClassifyRequest(text="hello")
        refused = await grpc_web_call(http, base, CLASSIFY, request, cls_pb.ClassifyResponse)
        served = await grpc_web_call(
            http,
            base,
            CLASSIFY,
            request,
            cls_pb.ClassifyResponse,
            headers={"authorization": f"Bearer {edge.token('web-client')}"},
        )
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED
    info = error_details_pb2.ErrorInfo()
    assert refused.status.details[0].Unpack(info)
    assert info.reason == "TOKEN_MISSING"
    assert served.code == grpc.StatusCode.OK
    assert served.messages[0].classification.intent == "test/echo"


async def test_one_client_is_limited_while_another_is_not(edge: Edge) -> None:
    greedy, calm = edge.token("greedy"), edge.token("calm")
    outcomes: list[grpc.StatusCode] = []
    limited: grpc.aio.AioRpcError | None = None

    async def once() -> None:
        nonlocal limited
        try:
            await edge.classify(greedy)
            outcomes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as exc:
            outcomes.append(exc.code())
            limited = exc

    # all at once, well within the bucket's 1 s refill
    await asyncio.gather(*(once() for _ in range(BURST + 3)))
    # a refill between the first and the last call would let one more through
    assert outcomes.count(grpc.StatusCode.OK) in (BURST, BURST + 1), outcomes
    assert set(outcomes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, outcomes
    for _ in range(3):
        assert (await edge.classify(calm)).classification.intent == "test/echo"
    assert limited is not None
    assert _edge_reason(limited) == REASON_CLIENT_RATE_LIMITED
    status = status_pb2.Status.FromString(
        _padded(trailing_metadata(limited)["grpc-status-details-bin"])
    )
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))
    assert retry.retry_delay.seconds >= 1
    assert trailing_metadata(limited)["retry-after"] == "1"


def _padded(raw: str | bytes) -> bytes:
    if isinstance(raw, bytes):
        return raw
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard edge")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "edge.pem", directory / "edge.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


async def test_the_edge_terminates_tls_with_a_certificate_from_files(
    topology: Topology, tmp_path: Path
) -> None:
    cert, key_file = _self_signed(tmp_path)
    auth = DevAuth.under(tmp_path / "data")
    key = ensure_keys(auth)
    settings = MeshSettings(
        edge_jwks_file=auth.jwks_path, edge_tls_cert_file=cert, edge_tls_key_file=key_file
    )
    token = mint(key, subject="tls-client", ttl_s=600, issuer=ISSUER, audience=AUDIENCE)
    async with running_mesh(
        sub_topology(topology, {"classification": 1}), settings, tmp_path
    ) as mesh:
        await wait_healthy(mesh, "classification", 1)
        config = ConnectConfig(mesh.edge, token=token, tls_ca_file=str(cert))
        async with ClassificationClient(config) as client:
            assert (await client.classify("hello")).intent == "test/echo"
        # plaintext to a TLS port: no answer
        async with ClassificationClient(ConnectConfig(mesh.edge, token=token)) as client:
            with pytest.raises(Unavailable):
                await client.classify("hello", timeout_s=2)
        # TLS 1.2 clients are served too (the minimum; 1.3 is what grpc negotiated above)
        context = ssl.create_default_context(cafile=str(cert))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        host, port = mesh.edge.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port), ssl=context)
        try:
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        finally:
            writer.close()


@contextlib.contextmanager
def _serving_file(path: Path) -> Iterator[str]:
    """An HTTP server on loopback whose every GET answers ``path``; its URL."""
    body = path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_keys_from_a_jwks_url(topology: Topology, tmp_path: Path) -> None:
    auth = DevAuth.under(tmp_path / "data")
    key = ensure_keys(auth)
    token = mint(key, subject="url-client", ttl_s=600, issuer=ISSUER, audience=AUDIENCE)
    with _serving_file(auth.jwks_path) as url:
        settings = MeshSettings(edge_jwks_url=url)
        topo = sub_topology(topology, {"classification": 1})
        async with running_mesh(topo, settings, tmp_path) as mesh:
            await wait_healthy(mesh, "classification", 1)
            config = ConnectConfig(mesh.edge, token=token)
            async with ClassificationClient(config) as client:
                assert (await client.classify("hello")).intent == "test/echo"
            other = ec.generate_private_key(ec.SECP256R1())
            forged = mint(other, subject="x", ttl_s=600, issuer=ISSUER, audience=AUDIENCE)
            async with ClassificationClient(ConnectConfig(mesh.edge, token=forged)) as client:
                with pytest.raises(PermissionDenied) as err:
                    await client.classify("hello")
            assert err.value.reason == "TOKEN_INVALID"


async def test_the_cli_says_how_to_get_a_token(edge: Edge, tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path)}  # no mesh ran here
    env.pop("SWITCHBOARD_TOKEN", None)
    argv = [sys.executable, "-m", "switchboard_client.cli", "chat", "--target", edge.mesh.edge]
    result = await asyncio.to_thread(
        subprocess.run,
        [*argv, "--message", "hello"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "a bearer token is required" in result.stderr
    assert "SWITCHBOARD_TOKEN" in result.stderr
