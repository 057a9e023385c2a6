"""The memoising span encoder builds exactly the request the library's encoder builds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, TraceFlags, TraceState

from switchboard_server.observability.span_export import OtlpSpanExporter, SpanEncoder


def _spans() -> list[ReadableSpan]:
    """Spans of every shape: two resources, several scopes, remote and local parents,
    attributes of each type, events, links, error status, trace state."""
    memory = InMemorySpanExporter()
    providers = []
    for name, schema in (("a", ""), ("b", "https://opentelemetry.io/schemas/1.21.0")):
        provider = TracerProvider(resource=Resource({"service.name": name}, schema_url=schema))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        providers.append(provider)
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "x1"), ("other", "y")]),
    )
    parent_context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    for i, provider in enumerate(providers * 3):
        grpc_tracer = provider.get_tracer("opentelemetry.instrumentation.grpc", "0.66b2")
        domain = provider.get_tracer("switchboard", schema_url="https://example.com/s")
        with grpc_tracer.start_as_current_span(
            "/switchboard.classification.v1.ClassificationService/Classify",
            context=parent_context,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.grpc.status_code": 0,
                "net.peer.port": str(40000 + i),
                "ratio": 0.25,
                "flag": True,
                "raw": b"\x00\x01",
            },
        ):
            with domain.start_as_current_span(
                "chat.classify",
                attributes={"intent_l1": "billing", "degraded": ("CONTEXT",), "ints": (1, 2)},
                links=[Link(remote, {"why": "retry"})],
            ) as span:
                span.set_attribute("bools", (True, False))
                span.add_event("fallback", {"stage": "classify", "n": i})
                if i % 2:
                    span.set_status(trace.StatusCode.ERROR, "downstream unavailable")
            with grpc_tracer.start_as_current_span("", kind=trace.SpanKind.CLIENT):
                pass
    return list(memory.get_finished_spans())


def test_the_request_equals_the_librarys_encoding() -> None:
    spans = _spans()
    encoder = SpanEncoder()
    assert encoder.request(spans) == encode_spans(spans)
    # the second time from the memo, and per span as the batch processor may split
    assert encoder.request(spans) == encode_spans(spans)
    assert encoder.request(spans[3:5]) == encode_spans(spans[3:5])


def test_a_full_memo_starts_over_and_stays_correct() -> None:
    spans = _spans()
    encoder = SpanEncoder(max_cached=2)
    for _ in range(3):
        assert encoder.request(spans) == encode_spans(spans)
    assert len(encoder._attributes) <= 2


def test_the_exporter_sends_the_encoders_request() -> None:
    spans = _spans()
    exporter = OtlpSpanExporter(endpoint="127.0.0.1:9", insecure=True, timeout=0.1)
    try:
        assert exporter._translate_data(spans) == encode_spans(spans)
    finally:
        exporter.shutdown()


class _Capturing(OtlpSpanExporter):
    """Records what it would send, sends nothing."""

    def __init__(self) -> None:
        super().__init__(endpoint="127.0.0.1:9", insecure=True, timeout=0.1)
        self.requests: list[ExportTraceServiceRequest] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.requests.append(self._translate_data(spans))
        return SpanExportResult.SUCCESS


def test_the_sdks_batch_processor_exports_the_librarys_request() -> None:
    exporter = _Capturing()
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "orchestration"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("switchboard")
    with (
        tracer.start_as_current_span("chat", attributes={"intent_l1": "billing"}),
        tracer.start_as_current_span("chat.retrieve") as retrieve,
    ):
        retrieve.set_status(trace.StatusCode.ERROR, "context unavailable")
    assert provider.force_flush()
    assert exporter.requests == [encode_spans(memory.get_finished_spans())]
    provider.shutdown()
