"""What the smoke test asserts about the running stack, each a poll with a deadline:
a Chat through the edge, Prometheus's ``up`` for every target, the Chat's trace in the
trace store with spans from the edge, every sidecar and every app, and an app that
comes back after its process is killed."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc

T = TypeVar("T")


class CheckFailed(AssertionError):
    pass


def poll(what: str, attempt: Callable[[], T | None], timeout_s: float, every_s: float = 1.0) -> T:
    """``attempt()`` until it returns a value; the last reason in the failure."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while True:
        try:
            value = attempt()
            if value is not None:
                return value
        except (grpc.RpcError, OSError, CheckFailed, ValueError, KeyError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout_s:.0f} s (last: {last})")
        time.sleep(every_s)


def chat(edge: str, session_id: str, token: str) -> tuple[str, str]:
    """One traced Chat through the edge with the bearer ``token``; ``(trace id,
    reply)``. Raises on any failure, a degraded reply included."""
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with grpc.insecure_channel(edge) as channel:
        stub = pb_grpc.OrchestrationServiceStub(channel)
        reply = stub.Chat(
            pb.ChatRequest(
                message="wake me up at 7 tomorrow",
                session_id=session_id,
                request_id=str(uuid.uuid4()),
            ),
            metadata=(("traceparent", traceparent), ("authorization", f"Bearer {token}")),
            timeout=10,
        )
    if not reply.reply:
        raise CheckFailed("empty reply")
    if reply.degraded:
        raise CheckFailed(f"degraded reply: {list(reply.degraded)}")
    return trace_id, reply.reply


def chat_refused_without_token(edge: str) -> str:
    """A Chat without a token: the edge must answer UNAUTHENTICATED itself."""
    with grpc.insecure_channel(edge) as channel:
        stub = pb_grpc.OrchestrationServiceStub(channel)
        try:
            stub.Chat(pb.ChatRequest(message="hi", session_id="anon"), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return str(exc.details())
            raise CheckFailed(f"without a token: {exc.code()}, not UNAUTHENTICATED") from exc
    raise CheckFailed("a Chat without a token was answered")


def plaintext_refused_at_ingress(
    docker: list[str], container: str, ingress_port: int, health_port: int
) -> str:
    """Inside a pod: a plaintext health Check to the sidecar's ingress fails (it wants a
    mesh client certificate), the same Check on the plaintext health route answers."""
    health = [*docker, "exec", container, "switchboard-health", "--address"]
    mtls = subprocess.run([*health, f"127.0.0.1:{ingress_port}"], capture_output=True, text=True)
    if mtls.returncode == 0:
        raise CheckFailed(f"a plaintext Check on the ingress :{ingress_port} was answered")
    route = subprocess.run([*health, f"127.0.0.1:{health_port}"], capture_output=True, text=True)
    if route.returncode != 0:
        raise CheckFailed(f"the health route :{health_port} failed: {route.stderr.strip()}")
    said = (mtls.stderr or mtls.stdout).strip().splitlines()
    return said[-1] if said else f"exit {mtls.returncode}"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def prometheus_up(base_url: str, expected_targets: int) -> dict[str, float] | None:
    """``{instance/job: up}`` once Prometheus has every target and all are up == 1."""
    body = _get(f"{base_url}/api/v1/query?query=up")
    results = body["data"]["result"]
    up = {f"{r['metric']['job']}/{r['metric']['instance']}": float(r["value"][1]) for r in results}
    if len(up) < expected_targets:
        raise CheckFailed(f"{len(up)} of {expected_targets} targets scraped: {sorted(up)}")
    down = sorted(k for k, v in up.items() if v != 1.0)
    if down:
        raise CheckFailed(f"up != 1: {down}")
    return up


def trace_services(base_url: str, trace_id: str, expected: set[str]) -> set[str] | None:
    """The services with spans in the trace, once every expected one has some."""
    try:
        document = _get(f"{base_url}/traces/{trace_id}")
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"trace {trace_id}: HTTP {exc.code}") from exc
    services = {span["service"] for span in document["spans"]}
    missing = expected - services
    if missing:
        raise CheckFailed(
            f"trace {trace_id} lacks spans of {sorted(missing)}; has {sorted(services)}"
        )
    return services


def inspect(docker: list[str], container: str) -> dict[str, Any]:
    run = subprocess.run(
        [*docker, "inspect", container], check=True, capture_output=True, text=True
    )
    state: dict[str, Any] = json.loads(run.stdout)[0]
    return state


def crash(docker: list[str], container: str) -> int:
    """SIGKILL every process of the container's user but its init: the app dies as in a
    crash (not ``docker kill``, which Docker counts as a manual stop and never restarts).
    Returns the restart count before."""
    before = int(inspect(docker, container)["RestartCount"])
    subprocess.run([*docker, "exec", container, "sh", "-c", "kill -KILL -1"], check=False)
    return before


def restarted_healthy(docker: list[str], container: str, restarts_before: int) -> str | None:
    state = inspect(docker, container)
    if int(state["RestartCount"]) <= restarts_before:
        raise CheckFailed(f"not restarted yet (RestartCount {state['RestartCount']})")
    health = state["State"].get("Health", {}).get("Status")
    if health != "healthy":
        raise CheckFailed(f"restarted, health {health}")
    return str(health)
