"""Tracer provider from settings, and a helper for domain spans.

* Sampling: parent-based ratio (``SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO``): a sampled
  caller (W3C ``traceparent`` from Envoy or another service) is always followed.
* Spans: the SDK's provider, whose recorded child spans skip the SDK span's
  bookkeeping (:mod:`.lean_spans`).
* Export: OTLP/gRPC to ``SWITCHBOARD_OBS_OTLP_ENDPOINT`` through the SDK's batch
  processor and the library's exporter with a cheaper span encoding, done on the
  processor's worker thread (:mod:`.span_export`).
  Empty means tracing is off: the provider is a no-op one, so no span is built or
  kept (a recorded span that nobody exports costs ~50-90 us per RPC side here for
  nothing). An incoming W3C ``traceparent`` still flows through unchanged to outbound
  calls and into log lines (see ``Observability``), so a trace started by Envoy stays
  whole.

Domain spans (no grpc import needed; ``current_span(tracer, name)`` is the same without
the provider lookup, for a tracer kept by its owner)::

    with domain_span(runtime.tracer_provider, "classify", intent_l1="billing",
                     confidence_bucket="0.8-0.9") as span:
        ...
        span.set_attribute("degraded", False)

Attribute values must be bounded and never user text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

from switchboard_server.observability.lean_spans import LeanTracerProvider
from switchboard_server.observability.settings import ObservabilitySettings

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
    provider = LeanTracerProvider(
        resource=Resource.create({"service.name": service_resource_name(service)}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if exporter is None:
        from switchboard_server.observability.span_export import OtlpSpanExporter

        exporter = OtlpSpanExporter(
            endpoint=settings.otlp_endpoint, insecure=True, timeout=settings.otlp_timeout_s
        )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=settings.export_interval_ms)
    )
    return provider


def confidence_bucket(confidence: float) -> str:
    """A bounded label for a confidence in [0, 1]: '0.0-0.1' ... '0.9-1.0'."""
    tenth = min(max(int(confidence * 10), 0), 9)
    return f"{tenth / 10:.1f}-{(tenth + 1) / 10:.1f}"


class current_span:  # lower case: used like the method it stands in for
    """``tracer.start_as_current_span(name, attributes=...)`` as one plain context
    manager: the same span (INTERNAL, child of the current span, ended on exit, an
    ``Exception`` recorded and its status ERROR, then re-raised), without the two
    generator context managers (the SDK's and ``use_span``) entered per span.
    """

    __slots__ = ("_attributes", "_name", "_span", "_token", "_tracer")

    def __init__(
        self, tracer: trace.Tracer, name: str, attributes: Attributes | None = None
    ) -> None:
        self._tracer, self._name, self._attributes = tracer, name, attributes

    def __enter__(self) -> trace.Span:
        self._span = span = self._tracer.start_span(self._name, attributes=self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)
        span = self._span
        # as use_span: only an Exception (not e.g. CancelledError) is an error
        if isinstance(exc, Exception) and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()


@contextmanager
def domain_span(
    tracer_provider: trace.TracerProvider, name: str, **attributes: AttributeValue
) -> Iterator[trace.Span]:
    """An INTERNAL span ``name`` (child of the current span) with ``attributes``.

    Exceptions are recorded and set the span status to ERROR, then re-raised.
    """
    tracer = tracer_provider.get_tracer(TRACER_NAME)
    with current_span(tracer, name, attributes) as span:
        yield span
