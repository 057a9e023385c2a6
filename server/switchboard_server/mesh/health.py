"""Health probes: gRPC ``grpc.health.v1`` through a port, Envoy admin ``/ready``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard_server.mesh.envoy import is_ready
from switchboard_server.mesh.peer import secure_channel

PROBE_TIMEOUT_S = 1.0


async def grpc_health(
    target: str,
    service: str = "",
    timeout_s: float = PROBE_TIMEOUT_S,
    *,
    identity_dir: Path | None = None,
    server_name: str = "",
) -> str:
    """The serving status name (SERVING, NOT_SERVING, ...) or the failure's code name.

    With ``identity_dir`` the probe speaks mTLS as that identity (a sidecar's public
    port with mTLS on) and checks the server is ``server_name``."""
    if identity_dir is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        try:
            channel = secure_channel(target, identity_dir, server_name)
        except OSError:
            return "NO_IDENTITY"
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def probe_grpc(probe: Mapping[str, object]) -> str:
    """:func:`grpc_health` as a probe recorded in the state file describes it (target,
    service, and over mTLS the identity to probe as)."""
    identity = str(probe.get("identity_dir", ""))
    return await grpc_health(
        str(probe.get("target", "")),
        str(probe.get("service", "")),
        identity_dir=Path(identity) if identity else None,
        server_name=str(probe.get("server_name", "")),
    )


async def envoy_ready(client: httpx.AsyncClient, admin_port: int) -> str:
    return "SERVING" if await is_ready(client, admin_port) else "NOT_READY"
