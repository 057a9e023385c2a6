"""What a service plugs into the shared server: the ServiceModule protocol.

``create_server`` builds one ``ServiceModule`` per process (see ``registry.py``),
lets it register its servicer, then awaits ``start()`` (load the model, open the
store) before the health status turns SERVING, and ``stop()`` after the drain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from switchboard_server.config import ServiceName, Settings


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
