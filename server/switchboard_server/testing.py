"""Helpers for tests and benchmarks that run Switchboard servers.

* :class:`PortPool` / :func:`free_port`: loopback ports a server can bind;
* :func:`wait_serving` / :func:`wait_serving_async`: until a server reports
  ``grpc.health.v1`` SERVING (a connected channel is not enough: until its store is
  open or its model loaded, a service answers UNAVAILABLE "not ready");
  :func:`probe_channel` / :func:`sync_probe_channel`: a channel to wait on a server that
  is still starting (it reconnects every 20-100 ms, not on gRPC's 1 s, 1.6 s, .. backoff);
* :func:`start_services`: any of the three services in this process on port 0,
  orchestration pointed straight at the peers started with it, stopped on exit;
* :func:`stop_process`: stop a server process by its PID.

Our own suite and ``scripts/bench`` use these, and so may the tests of an application
built on Switchboard. Nothing here runs at import or keeps module state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard_server.app import AppServer, create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.service import ServiceModule

__all__ = [
    "ALL_SERVICES",
    "PortPool",
    "RunningServices",
    "ServerExited",
    "free_port",
    "probe_channel",
    "start_services",
    "stop_process",
    "sync_probe_channel",
    "wait_serving",
    "wait_serving_async",
    "with_parts",
]

ALL_SERVICES = (ServiceName.CLASSIFICATION, ServiceName.CONTEXT, ServiceName.ORCHESTRATION)
_LOWEST_PORT = 10_000
_SERVING = health_pb2.HealthCheckResponse.SERVING


# ---- ports ------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral port range starts (Linux; 32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortPool:
    """Distinct free loopback ports, for one test's or one benchmark run's servers.

    Why not ``bind(("127.0.0.1", 0))``: that gives an ephemeral port, and the kernel
    hands the same range out as the local end of every outgoing connection, so between
    picking it and a server binding it, a connection opened meanwhile (an Envoy dialling
    its upstreams, a health probe) can take it. The pool hands out consecutive ports
    from a random start below the ephemeral range instead, each bindable when handed
    out and never the same one twice.

    Callable as ``make_plan``'s port allocator (``purpose`` and ``default`` unused).
    """

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._ephemeral = _ephemeral_low()
        top = self._ephemeral - 1_000
        # no room below the ephemeral range (0): let the kernel pick
        self._next = random.randrange(_LOWEST_PORT, top) if top > _LOWEST_PORT + 1_000 else 0

    def __call__(self, purpose: str = "", default: int = 0, *, stride: int = 0) -> int:
        """A free port; with ``stride``, one whose ``port + stride`` is free as well
        (replica 1 of a replicated service listens there, see REPLICA_PORT_STRIDE)."""
        while True:
            port = self._candidate()
            wanted = {port, port + stride}
            if wanted & self._used or not all(_bindable(p) for p in wanted):
                continue
            self._used |= wanted
            return port

    def _candidate(self) -> int:
        if not self._next:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return int(sock.getsockname()[1])
        port = self._next
        self._next = port + 1 if port + 1 < self._ephemeral else _LOWEST_PORT
        return port


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for one server; several: a PortPool)."""
    return PortPool()()


# ---- waiting for SERVING ----------------------------------------------------------------


class ServerExited(RuntimeError):
    """The server process ended before it reported SERVING."""


def _exited_message(process: subprocess.Popen[Any], exited: Callable[[], str] | None) -> str:
    if exited is not None:
        return exited()
    return f"the server (pid {process.pid}) exited with {process.returncode} during start-up"


def _check_timeout(deadline: float) -> float:
    """One health check's deadline: at most a second, never past the overall one."""
    return max(0.05, min(1.0, deadline - time.monotonic()))


def wait_serving(
    channel: grpc.Channel,
    process: subprocess.Popen[Any] | None = None,
    *,
    service: str = "",
    timeout: float = 30.0,
    interval: float = 0.1,
    exited: Callable[[], str] | None = None,
) -> None:
    """Block until the server behind ``channel`` reports ``service`` SERVING.

    With ``process``, fail at once with :class:`ServerExited` (message: ``exited()``,
    e.g. the end of its log) if it ends first. :class:`TimeoutError` after ``timeout``
    seconds; the server is asked every ``interval`` seconds.
    """
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerExited(_exited_message(process, exited))
        with contextlib.suppress(grpc.RpcError):
            if health.Check(request, timeout=_check_timeout(deadline)).status == _SERVING:
                return
        time.sleep(interval)
    raise TimeoutError(f"the server did not become SERVING within {timeout} s")


# gRPC's reconnect backoff (channel arguments, see grpc_types.h), shortened for a server
# that is starting on this machine: the first retry after 20 ms, none more than 100 ms apart.
_PROBE_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 20), ("grpc.max_reconnect_backoff_ms", 100))


def probe_channel(target: str) -> grpc.aio.Channel:
    """An insecure channel to ``target`` that reconnects every 20-100 ms.

    With gRPC's default backoff a channel that tried before the server listened waits
    1 s, then 1.6 s, 2.6 s, .. before it tries again: the moment it sees SERVING is then
    its own schedule, not the server's (a start-up benchmark measured exactly that).
    Use it for a server that is starting or restarting; the channel serves calls as usual.
    """
    return grpc.aio.insecure_channel(target, options=list(_PROBE_OPTIONS))


def sync_probe_channel(target: str) -> grpc.Channel:
    """:func:`probe_channel` for blocking code (:func:`wait_serving`)."""
    return grpc.insecure_channel(target, options=list(_PROBE_OPTIONS))


async def wait_serving_async(
    channel: grpc.aio.Channel,
    process: subprocess.Popen[Any] | None = None,
    *,
    service: str = "",
    timeout: float = 30.0,  # noqa: ASYNC109 - bounded by default: a hang fails, not waits
    interval: float = 0.1,
    exited: Callable[[], str] | None = None,
) -> None:
    """:func:`wait_serving` for a ``grpc.aio`` channel, without blocking the loop."""
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerExited(_exited_message(process, exited))
        with contextlib.suppress(grpc.aio.AioRpcError):
            reply = await health.Check(request, timeout=_check_timeout(deadline))
            if reply.status == _SERVING:
                return
        await asyncio.sleep(interval)
    raise TimeoutError(f"the server did not become SERVING within {timeout} s")


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate ``process`` by its PID, then kill it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


# ---- services in this process -----------------------------------------------------------


@dataclass
class RunningServices:
    """Started servers by service, their ports, and channels to them (closed on exit)."""

    settings: Settings
    servers: dict[ServiceName, AppServer]
    ports: dict[ServiceName, int]
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def target(self, service: ServiceName) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def channel(self, service: ServiceName) -> grpc.aio.Channel:
        """A new channel to ``service``, closed when the services stop."""
        channel = grpc.aio.insecure_channel(self.target(service))
        self._channels.append(channel)
        return channel

    async def stop(self, service: ServiceName) -> None:
        """Stop one service now (e.g. to see how the others degrade)."""
        await self.servers[service].stop(0)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        for server in reversed(list(self.servers.values())):
            await server.stop(0)


def with_parts(settings: Settings, **parts: Mapping[str, Any]) -> Settings:
    """``settings`` with fields of some parts replaced, e.g. ``orchestration={"x": 1}``."""
    updated = {
        name: getattr(settings, name).model_copy(update=dict(values))
        for name, values in parts.items()
    }
    return dataclasses.replace(settings, **updated)


@contextlib.asynccontextmanager
async def start_services(
    data_dir: Path,
    services: Collection[ServiceName] = ALL_SERVICES,
    *,
    settings: Settings | None = None,
    modules: Mapping[ServiceName, ServiceModule] | None = None,
    model_cache: Path | None = None,
) -> AsyncIterator[RunningServices]:
    """Start ``services`` on 127.0.0.1:0, orchestration pointed at the peers started here.

    ``data_dir`` is used when ``settings`` is not given (grace period 0 for fast stops).
    Any service may be replaced by a module of the caller's (``modules``).

    ``model_cache`` is a directory of trained classification models shared between
    starts: copied in before classification starts (so it loads instead of training)
    and updated afterwards.
    """
    base = settings or Settings(core=CoreSettings(data_dir=data_dir, grace_period_s=0.0))
    modules = modules or {}
    running = RunningServices(base, {}, {})
    models = base.core.data_dir_for(ServiceName.CLASSIFICATION) / "models"
    cache = model_cache if ServiceName.CLASSIFICATION not in modules else None
    if cache is not None:
        _copy_models(cache, models)
    try:
        for service in ALL_SERVICES:
            if service in services and service is not ServiceName.ORCHESTRATION:
                server, port = await create_server(
                    base, service, "127.0.0.1:0", module=modules.get(service)
                )
                running.servers[service], running.ports[service] = server, port
        if ServiceName.ORCHESTRATION in services:
            peers: dict[str, Any] = {}
            if ServiceName.CLASSIFICATION in running.ports:
                peers["classification_target"] = running.target(ServiceName.CLASSIFICATION)
            if ServiceName.CONTEXT in running.ports:
                peers["context_target"] = running.target(ServiceName.CONTEXT)
            running.settings = with_parts(base, orchestration=peers)
            server, port = await create_server(
                running.settings,
                ServiceName.ORCHESTRATION,
                "127.0.0.1:0",
                module=modules.get(ServiceName.ORCHESTRATION),
            )
            running.servers[ServiceName.ORCHESTRATION] = server
            running.ports[ServiceName.ORCHESTRATION] = port
        await asyncio.gather(*(server.start() for server in running.servers.values()))
        if cache is not None:
            _copy_models(models, cache)
        yield running
    finally:
        await running.close()


def _copy_models(source: Path, destination: Path) -> None:
    if not source.is_dir():
        return
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.pkl"):
        if not (destination / path.name).exists():
            shutil.copy2(path, destination / path.name)
