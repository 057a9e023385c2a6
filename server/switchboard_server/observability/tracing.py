"""Tracer provider from settings, and a helper for domain spans.

The stock OpenTelemetry SDK, configured, not extended:

* Sampling: ``ParentBased(TraceIdRatioBased(SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO))``, 10 %
  of new traces by default; a caller's sampled flag (W3C ``traceparent`` from Envoy or
  another service) always wins, so a trace is kept or dropped whole. ``switchboard up``
  samples everything, so ``switchboard traces`` shows every turn.
* Export: the SDK's ``BatchSpanProcessor`` (batch size, queue and delay from settings)
  and the OTLP/gRPC exporter to ``SWITCHBOARD_OBS_OTLP_ENDPOINT``.
* Off: an empty endpoint (and no exporter given) means a no-op provider, so no span is
  built or kept. An incoming W3C ``traceparent`` still flows through unchanged to
  outbound calls and into log lines (see ``Observability``), so a trace started by
  Envoy stays whole.

Domain spans (no grpc import needed)::

    with domain_span(runtime.tracer_provider, "classify", intent_l1="billing",
                     confidence_bucket="0.8-0.9") as span:
        ...
        span.set_attribute("degraded", False)

Attribute values must be bounded and never user text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from switchboard_server.observability.settings import ObservabilitySettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER_NAME = "switchboard"


def service_resource_name(service: str) -> str:
    """The ``service.name`` resource attribute of a Switchboard service."""
    return f"switchboard-{service}"


def tracing_enabled(settings: ObservabilitySettings, exporter: SpanExporter | None) -> bool:
    """Spans are recorded only when something exports them."""
    return exporter is not None or bool(settings.otlp_endpoint)


def build_tracer_provider(
    settings: ObservabilitySettings,
    service: str,
    *,
    exporter: SpanExporter | None = None,
) -> trace.TracerProvider:
    """A provider for ``service`` with the configured sampler and exporter.

    ``exporter`` overrides the OTLP exporter (tests pass an in-memory one). With
    neither an exporter nor an endpoint, tracing is off: a no-op provider.
    """
    if not tracing_enabled(settings, exporter):
        return trace.NoOpTracerProvider()
    # the SDK and the exporter (~0.1 s of imports) only when spans are exported
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_resource_name(service)}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint, insecure=True, timeout=settings.otlp_timeout_s
        )
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=settings.export_queue_size,
            schedule_delay_millis=settings.export_interval_ms,
            max_export_batch_size=settings.export_batch_size,
        )
    )
    return provider


def confidence_bucket(confidence: float) -> str:
    """A bounded label for a confidence in [0, 1]: '0.0-0.1' ... '0.9-1.0'."""
    tenth = min(max(int(confidence * 10), 0), 9)
    return f"{tenth / 10:.1f}-{(tenth + 1) / 10:.1f}"


@contextmanager
def domain_span(
    tracer_provider: trace.TracerProvider, name: str, **attributes: AttributeValue
) -> Iterator[trace.Span]:
    """An INTERNAL span ``name`` (child of the current span) with ``attributes``.

    Exceptions are recorded and set the span status to ERROR, then re-raised.
    """
    tracer = tracer_provider.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span
