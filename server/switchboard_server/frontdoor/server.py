"""The front door's gRPC server: health and reflection for every exposed service.

``create_frontdoor(...)`` returns ``(frontdoor, port)``; ``start()`` listens (every
status NOT_SERVING until the first look at the edge) and starts polling; ``stop()``
turns every status NOT_SERVING for good, then drains within ``grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import grpc
import httpx
import structlog
from grpc_health.v1 import health_pb2

from switchboard_server.frontdoor.domain import not_serving
from switchboard_server.frontdoor.poller import EdgePoller, Statuses
from switchboard_server.mesh.topology import service_methods
from switchboard_server.standard_services import HealthServicer, add_health, add_reflection

log = structlog.get_logger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FrontDoor:
    """A started-or-not front door: its server, health servicer and edge poller."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health: HealthServicer,
        poller: EdgePoller,
        *,
        interval_s: float,
        grace_s: float,
    ) -> None:
        self.grpc_server = server
        self.health = health
        self.poller = poller
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def set_statuses(self, statuses: Statuses) -> None:
        for service, serving in statuses.items():
            await self.health.set(service, SERVING if serving else NOT_SERVING)

    async def _poll(self) -> None:
        while True:
            await self.set_statuses(await self.poller.look())
            await asyncio.sleep(self.interval_s)

    async def start(self) -> None:
        await self.set_statuses(not_serving(self.poller.exposed))
        await self.grpc_server.start()
        self._task = asyncio.create_task(self._poll())
        log.info("frontdoor.started", exposed=sorted(self.poller.exposed))

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING at once (Watch callers see it), then drain within the grace."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.grpc_server.stop(self.grace_s if grace is None else grace)
        await self.poller.client.aclose()
        log.info("frontdoor.stopped")


async def create_frontdoor(
    exposed: Mapping[str, str],
    edge_admin_port: int,
    bind: str,
    *,
    interval_s: float,
    grace_s: float,
    client: httpx.AsyncClient | None = None,
) -> tuple[FrontDoor, int]:
    """A front door for ``exposed`` (service name -> edge cluster) bound to ``bind``.

    Statuses come from the edge Envoy's admin on ``edge_admin_port``, every
    ``interval_s`` (through ``client``, closed on stop). Reflection lists and describes
    every exposed service.
    """
    for service in exposed:
        service_methods(service)  # imports its generated code: reflection describes it
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health = add_health(server)
    add_reflection(server, sorted(exposed))
    port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"could not bind {bind}")
    poller = EdgePoller(edge_admin_port, exposed, client or httpx.AsyncClient())
    return FrontDoor(server, health, poller, interval_s=interval_s, grace_s=grace_s), port
