"""Per-process observability: tracer provider, metrics registry and their servers."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, start_http_server

from switchboard_server.config import ServiceName, Settings


class Observability:
    """Owns the tracer provider and the Prometheus registry of one server."""

    def __init__(self, settings: Settings, service: ServiceName, registry: CollectorRegistry):
        self.settings = settings
        self.service = service
        self.registry = registry
        self.tracer_provider = TracerProvider(
            resource=Resource.create({"service.name": f"switchboard-{service.value}"})
        )
        endpoint = settings.observability.otlp_endpoint
        if endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
            )
        self._metrics_server: Any = None
        self.metrics_port: int | None = None

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [aio_server_interceptor(tracer_provider=self.tracer_provider)]

    def start_metrics_server(self) -> None:
        port = self.settings.observability.metrics_port
        if port is None or self._metrics_server is not None:
            return
        server, _thread = start_http_server(
            port, addr=self.settings.core.host, registry=self.registry
        )
        self._metrics_server = server
        self.metrics_port = server.server_port

    def shutdown(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        self.tracer_provider.shutdown()
