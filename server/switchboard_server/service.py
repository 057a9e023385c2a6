"""What a service plugs into the shared server: the ServiceModule protocol.

``create_server`` builds one ``ServiceModule`` per process (see ``registry.py``),
lets it register its servicer, then awaits ``start()`` (load the model, open the
store) before the health status turns SERVING, and ``stop()`` after the drain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from switchboard_server.config import ServiceName, Settings


class DependencyHealth:
    """What a service reports about the dependencies it cannot serve without (a store).

    The server answers health checks with ``NOT_SERVING`` while any reported dependency
    is down, so Envoy's active checks and probes route away from this replica; ``SERVING``
    again once every one is back (and only while the server is ready and not draining).
    """

    def __init__(self) -> None:
        self._down: set[str] = set()
        self._listeners: list[Callable[[bool], Awaitable[None]]] = []

    @property
    def healthy(self) -> bool:
        return not self._down

    def subscribe(self, listener: Callable[[bool], Awaitable[None]]) -> None:
        """``listener(healthy)`` is awaited whenever the overall answer changes."""
        self._listeners.append(listener)

    async def report(self, dependency: str, healthy: bool) -> None:
        was = self.healthy
        if healthy:
            self._down.discard(dependency)
        else:
            self._down.add(dependency)
        if self.healthy != was:
            for listener in self._listeners:
                await listener(self.healthy)


@dataclass(frozen=True)
class Runtime:
    """Process-wide collaborators handed to a service: nothing is a module global."""

    settings: Settings
    service: ServiceName
    metrics: CollectorRegistry
    tracer_provider: TracerProvider
    client_interceptors: Callable[[str], Sequence[grpc.aio.ClientInterceptor]] = lambda target: ()
    """Interceptors for an outbound channel to ``target`` (spans, metrics, correlation,
    access line): ``grpc.aio.insecure_channel(t, interceptors=runtime.client_interceptors(t))``.
    """
    dependencies: DependencyHealth = field(default_factory=DependencyHealth)
    """Where the service reports a dependency it cannot serve without going down or up."""


class ServiceModule(Protocol):
    """One gRPC service: its servicer plus the resources it owns."""

    @property
    def service_names(self) -> tuple[str, ...]:
        """Fully qualified proto service names it serves (for health and reflection)."""
        ...

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicer(s) to the server."""
        ...

    async def start(self) -> None:
        """Become ready (load model, open store). Health is SERVING only after this."""
        ...

    async def stop(self) -> None:
        """Release resources after the server has drained."""
        ...
