"""Per-process observability: tracer provider, metrics registry and their servers.

``Observability`` is built once per server by ``create_server``. It owns

* the tracer provider (sampler, batch processor and OTLP exporter from settings, see
  :mod:`.tracing`);
* the per-server Prometheus ``CollectorRegistry`` with process/platform/GC metrics and
  ``grpc_server_*`` / ``grpc_client_*`` RED metrics (see :mod:`.metrics`);
* the interceptors: ``server_interceptors()`` for the server (OpenTelemetry's server
  interceptor, then ours: correlation, error mapping, metrics and access line), and
  ``client_interceptors(target)`` for outbound channels (OpenTelemetry's client
  interceptors, then ours: metrics, correlation and access line)::

      channel = grpc.aio.insecure_channel(
          target, interceptors=runtime_observability.client_interceptors(target)
      )

With tracing off (no exporter, see :mod:`.tracing`) the OpenTelemetry interceptors are
left out altogether; ours then carry an incoming W3C ``traceparent`` through to
outbound calls and log lines themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector

from switchboard_server.config import ServiceName, Settings
from switchboard_server.interceptors import ServerInterceptor
from switchboard_server.observability.client import ClientTelemetry, telemetry_interceptors
from switchboard_server.observability.metrics import GrpcMetrics
from switchboard_server.observability.tracing import build_tracer_provider, tracing_enabled

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter


class Observability:
    """Owns the tracer provider and the Prometheus registry of one server."""

    def __init__(
        self,
        settings: Settings,
        service: ServiceName,
        registry: CollectorRegistry,
        *,
        span_exporter: SpanExporter | None = None,
    ):
        self.settings = settings
        self.service = service
        self.registry = registry
        obs = settings.observability
        self.tracing = tracing_enabled(obs, span_exporter)
        self.tracer_provider = build_tracer_provider(obs, service.value, exporter=span_exporter)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.server_metrics = GrpcMetrics(registry, "server", obs.latency_buckets_s)
        self.client_metrics = GrpcMetrics(registry, "client", obs.latency_buckets_s)
        self._metrics_server: Any = None
        self.metrics_port: int | None = None

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        """With tracing, OpenTelemetry's server interceptor (the server span, child of
        the caller's ``traceparent``, current for the rest), then ours: correlation,
        error mapping, RED metrics and the access line."""
        ours = ServerInterceptor(
            metrics=self.server_metrics,
            propagate_trace_context=not self.tracing,
            max_metadata_bytes=self.settings.core.max_metadata_bytes,
        )
        if not self.tracing:
            return [ours]
        # OpenTelemetry's instrumentation only with tracing on: its imports cost start-up
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        library: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.tracer_provider
        )
        return [library, ours]

    def client_interceptors(self, target: str = "") -> list[grpc.aio.ClientInterceptor]:
        """Interceptors for an outbound ``grpc.aio`` channel to ``target``.

        ``grpc_client_*`` metrics, ``x-correlation-id`` forwarding and one client
        access line per RPC (``peer`` is ``target``); with tracing, inside
        OpenTelemetry's client interceptors (the client span and W3C ``traceparent``,
        see :mod:`.client_tracing`).
        """
        access_log = self.settings.observability.client_access_log
        if self.tracing:
            # with tracing on only: OpenTelemetry's instrumentation costs start-up
            from switchboard_server.observability.client_tracing import (
                traced_client_interceptors,
            )

            return traced_client_interceptors(
                self.tracer_provider, self.client_metrics, target=target, access_log=access_log
            )
        telemetry = ClientTelemetry(
            self.client_metrics, target=target, access_log=access_log, propagate_trace_context=True
        )
        return telemetry_interceptors(telemetry)

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
        if self.tracing:  # an SDK provider then (off: the API's no-op one, nothing to flush)
            from opentelemetry.sdk.trace import TracerProvider

            if isinstance(self.tracer_provider, TracerProvider):
                self.tracer_provider.shutdown()
