"""The shared server: one ``grpc.aio`` server per service with health and reflection.

``create_server(settings, service, bind)`` returns ``(server, port)`` where ``server``
is an :class:`AppServer` that tests and ``__main__`` drive the same way::

    server, port = await create_server(settings, ServiceName.CONTEXT, "127.0.0.1:0")
    await server.start()      # listening; NOT_SERVING until the service is ready
    ...
    await server.stop()       # NOT_SERVING at once, then drain within the grace period
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, TypeVar, cast

import grpc
import structlog
import uvloop
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry

from switchboard_server.config import ServiceName, Settings
from switchboard_server.observability.setup import Observability
from switchboard_server.registry import build_service
from switchboard_server.service import Runtime, ServiceModule
from switchboard_server.standard_services import HealthServicer, add_health, add_reflection

log = structlog.get_logger(__name__)

OVERALL = ""  # the empty service name is the server's overall health
T = TypeVar("T")


def run_on_loop(main: Coroutine[Any, Any, T], event_loop: Literal["uvloop", "asyncio"]) -> T:
    """Run ``main`` to completion on a new event loop of the configured kind
    (``SWITCHBOARD_EVENT_LOOP``): uvloop by default, because the servers spend much of
    their CPU in the event loop and uvloop's costs less per call than asyncio's."""
    if event_loop == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)


def freeze_startup_heap() -> None:
    """Keep what starting allocated (models, indexes, imported modules) out of GC scans.

    For a process that serves one :class:`AppServer`, once it is ready: the cyclic
    collector's full passes then walk only what requests allocate, instead of every
    long-lived object of a loaded classifier, and a full pass no longer stalls the
    RPCs in flight.
    """
    gc.collect()
    gc.freeze()


def transport_metadata_bytes(settings: Settings) -> int:
    """grpc's own limit on request metadata, set as both its soft and hard limit.

    Twice what the server reads (``SWITCHBOARD_MAX_METADATA_BYTES``) or what a sidecar
    forwards, whichever is more: the interceptor, not grpc, answers oversized metadata,
    with RESOURCE_EXHAUSTED and reason METADATA_TOO_LARGE. grpc's defaults (8 KiB soft,
    16 KiB hard) would refuse between the two at random, with a message that echoes the
    headers, before any interceptor code runs.
    """
    forwarded = 1024 * settings.mesh.ingress_headers_kb
    return 2 * max(settings.core.max_metadata_bytes, forwarded)


class _GenericHandlersOnly:
    """The server as the generated ``add_*_to_server`` functions see it: each service is
    added as a generic handler only.

    Those functions also add the same handlers as "registered methods". For those,
    grpc.aio's accept loop (1.85) keeps one pending call per method and, for every
    incoming call, waits on all of them, which costs every call CPU in proportion to
    the number of methods served (grpc/grpc#43092, fix proposed in grpc/grpc#43461).
    Remove this class once the grpcio lower bound includes that fix.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Nothing to do: the generic handler added with them serves these methods."""


class AppServer:
    """A started-or-not gRPC server plus its service module, health and observability."""

    def __init__(
        self,
        server: grpc.aio.Server,
        module: ServiceModule,
        health_servicer: HealthServicer,
        runtime: Runtime,
        observability: Observability,
    ) -> None:
        self.grpc_server = server
        self.module = module
        self.health = health_servicer
        self.runtime = runtime
        self.observability = observability
        self._stopping = False
        self._ready = False
        self._stopped = asyncio.Event()
        runtime.dependencies.subscribe(self._dependencies_changed)

    @property
    def health_names(self) -> Sequence[str]:
        return (OVERALL, *self.module.service_names)

    async def _set_all(self, status: int) -> None:
        for name in self.health_names:
            await self.health.set(name, status)

    async def start(self) -> None:
        """Listen, then get the service ready; health turns SERVING only when it is."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc_server.start()
        self.observability.start_metrics_server()
        await self.module.start()
        if not self._stopping:
            self._ready = True
            await self._set_all(self._serving_status())
            log.info("server.ready", service=self.runtime.service.value)

    def _serving_status(self) -> int:
        response = health_pb2.HealthCheckResponse
        status: int = (
            response.SERVING if self.runtime.dependencies.healthy else response.NOT_SERVING
        )
        return status

    async def _dependencies_changed(self, healthy: bool) -> None:
        """A dependency went down or came back: health follows, once ready and until
        the drain (which answers NOT_SERVING for good)."""
        report = log.info if healthy else log.warning
        report("server.dependencies", service=self.runtime.service.value, healthy=healthy)
        if self._ready and not self._stopping:
            await self._set_all(self._serving_status())

    async def stop(self, grace: float | None = None) -> None:
        """Graceful drain: NOT_SERVING at once, new RPCs still taken for the drain delay,
        then in-flight RPCs get ``grace`` seconds."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.runtime.settings.core.grace_period_s if grace is None else grace
        log.info("server.draining", service=self.runtime.service.value, grace_s=grace)
        await self.health.enter_graceful_shutdown()
        delay = self.runtime.settings.core.drain_delay_s
        if delay > 0:
            # Callers learn NOT_SERVING at their next health check; until then new RPCs
            # still arrive here and are answered, instead of being refused mid-flight.
            await asyncio.sleep(delay)
        await self.grpc_server.stop(grace)
        await self.module.stop()
        # Flushing spans may wait on an unreachable collector: keep the event loop free.
        await asyncio.to_thread(self.observability.shutdown)
        log.info("server.stopped", service=self.runtime.service.value)
        self._stopped.set()

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()


async def create_server(
    settings: Settings,
    service: ServiceName,
    bind: str | None = None,
    *,
    module: ServiceModule | None = None,
) -> tuple[AppServer, int]:
    """Build the server for ``service`` bound to ``bind`` (default host:port from settings).

    Returns the not-yet-started :class:`AppServer` and the bound port (useful with port 0).
    ``module`` replaces the service's own module (tests use it to inject fakes).
    """
    observability = Observability(settings, service, CollectorRegistry(auto_describe=True))
    runtime = Runtime(
        settings=settings,
        service=service,
        metrics=observability.registry,
        tracer_provider=observability.tracer_provider,
        client_interceptors=observability.client_interceptors,
    )
    module = module or build_service(runtime)
    max_bytes = settings.core.max_message_bytes
    metadata_bytes = transport_metadata_bytes(settings)
    server = grpc.aio.server(
        interceptors=observability.server_interceptors(),
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            # soft = hard: one deterministic limit, not a random refusal between them
            ("grpc.max_metadata_size", metadata_bytes),
            ("grpc.absolute_max_metadata_size", metadata_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.core.max_concurrent_rpcs,
    )
    # only the add_*_to_server functions get it; they use nothing else of a server
    registry = cast(grpc.aio.Server, _GenericHandlersOnly(server))
    health_servicer = add_health(registry)
    module.register(registry)
    observability.server_metrics.initialize(module.service_names)
    add_reflection(registry, module.service_names)
    address = bind or f"{settings.core.host}:{settings.core.port_for(service)}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return AppServer(server, module, health_servicer, runtime, observability), port
