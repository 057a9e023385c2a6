"""Lean spans export exactly what the SDK's spans export, for every way we use spans."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from switchboard_server.observability.lean_spans import LeanSpan, LeanTracerProvider

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SAMPLED_RANDOM = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
ATTRIBUTES: dict[str, AttributeValue] = {
    "rpc.system": "grpc",
    "rpc.grpc.status_code": 0,
    "rpc.method": "Chat",
}


class _Counting(IdGenerator):
    """Predictable ids, so both providers give their spans the same ones."""

    def __init__(self) -> None:
        self._next = 0

    def generate_span_id(self) -> int:
        self._next += 1
        return self._next

    def generate_trace_id(self) -> int:
        return 0x1234


def _provider(kind: type[TracerProvider]) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = kind(
        resource=Resource.create({"service.name": "switchboard-test"}),
        sampler=ParentBased(TraceIdRatioBased(1.0)),
        id_generator=_Counting(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _from_here(attributes: Any) -> dict[str, Any]:
    """Event attributes, a stack trace from this file's first frame on (the frames
    above it are the tracer's own ``start_as_current_span``, which differ)."""
    found = dict(attributes or {})
    stacktrace = found.get("exception.stacktrace")
    if isinstance(stacktrace, str):
        found["exception.stacktrace"] = stacktrace[stacktrace.index(f'File "{__file__}"') :]
    return found


def _fields(span: ReadableSpan) -> tuple[Any, ...]:
    """Everything an exporter reads, but the timestamps."""
    return (
        span.name,
        span.context,
        span.parent,
        span.kind,
        dict(span.attributes or {}),
        [(e.name, _from_here(e.attributes)) for e in span.events],
        list(span.links),
        span.status.status_code,
        span.status.description,
        span.resource,
        span.instrumentation_scope,
        span.dropped_attributes,
        span.dropped_events,
        span.dropped_links,
    )


def _raise(exc: BaseException) -> None:
    raise exc


def _server_span_that_fails(tracer: trace.Tracer) -> None:
    """As the server interceptor: a child of the caller's context, current, failing."""
    parent = extract({"traceparent": SAMPLED})
    span = tracer.start_span(
        "/pkg.Service/Chat",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=ATTRIBUTES,
        set_status_on_exception=False,
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        with tracer.start_as_current_span("classify", attributes={"intent.l1": "billing"}) as inner:
            inner.set_attribute("degraded", False)
            inner.set_attributes({"confidence.bucket": "0.8-0.9", "sources": 3})
            _raise(ValueError("boom"))
    except ValueError as exc:
        span.set_attribute("rpc.grpc.status_code", 13)
        span.set_status(Status(StatusCode.ERROR, "internal error"))
        span.record_exception(exc, attributes={"extra": "yes"})
    finally:
        otel_context.detach(token)
        span.end()


def _outer_fails(tracer: trace.Tracer) -> None:
    with tracer.start_span("outer") as outer:
        client = tracer.start_span("/pkg.Peer/Get", kind=trace.SpanKind.CLIENT)
        client.set_status(StatusCode.ERROR, "unavailable")
        client.add_event("retry", {"attempt": 2})
        client.end()
        outer.update_name("outer renamed")
        raise KeyError("missing")


def _client_span_in_a_span_used_as_context_manager(tracer: trace.Tracer) -> None:
    token = otel_context.attach(extract({"traceparent": SAMPLED_RANDOM}))
    try:
        with pytest.raises(KeyError):
            _outer_fails(tracer)
    finally:
        otel_context.detach(token)


def _status_rules_and_ended_spans(tracer: trace.Tracer) -> None:
    parent = extract({"traceparent": SAMPLED})
    span = tracer.start_span("rules", context=parent)
    span.set_status(Status(StatusCode.UNSET))  # ignored
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "too late")  # OK is final
    span.set_attribute("bad", {"a": "dict"})  # dropped, as the SDK
    span.set_attribute("tuple", ("a", "b"))
    span.end()
    span.set_attribute("after", 1)  # all ignored once ended
    span.set_status(StatusCode.ERROR)
    span.add_event("after")
    span.update_name("after")
    span.end()  # not exported twice


CASES: list[Callable[[trace.Tracer], None]] = [
    _server_span_that_fails,
    _client_span_in_a_span_used_as_context_manager,
    _status_rules_and_ended_spans,
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_lean_spans_export_what_sdk_spans_export(case: Callable[[trace.Tracer], None]) -> None:
    exported = {}
    for kind in (TracerProvider, LeanTracerProvider):
        provider, exporter = _provider(kind)
        case(provider.get_tracer("switchboard", "1.0", "https://schema"))
        exported[kind] = [_fields(span) for span in exporter.get_finished_spans()]
    assert exported[LeanTracerProvider] == exported[TracerProvider]
    assert exported[TracerProvider]  # the case made spans at all


def test_stack_traces_of_recorded_exceptions_match() -> None:
    traces = []
    for kind in (TracerProvider, LeanTracerProvider):
        provider, exporter = _provider(kind)
        _server_span_that_fails(provider.get_tracer("switchboard"))
        events = [e for s in exporter.get_finished_spans() for e in s.events]
        traces.append([_from_here(e.attributes)["exception.stacktrace"] for e in events])
    assert traces[0] == traces[1]
    assert len(traces[0]) == 2  # the domain span's and the server span's
    assert all(t.endswith("ValueError: boom\n") and "in _raise" in t for t in traces[0])


def test_children_of_a_valid_parent_are_lean_and_exported_once() -> None:
    provider, exporter = _provider(LeanTracerProvider)
    tracer = provider.get_tracer("switchboard")
    assert tracer is provider.get_tracer("switchboard")  # one per scope, like the SDK's
    span = tracer.start_span("child", context=extract({"traceparent": SAMPLED}))
    assert isinstance(span, LeanSpan)
    assert span.is_recording()
    span.end()
    span.end()
    assert not span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["child"]


def test_roots_links_and_start_times_are_the_sdk_s_own_spans() -> None:
    provider, _ = _provider(LeanTracerProvider)
    tracer = provider.get_tracer("switchboard")
    parent = extract({"traceparent": SAMPLED})
    link = trace.Link(trace.get_current_span(parent).get_span_context())
    for span in (
        tracer.start_span("root"),
        tracer.start_span("linked", context=parent, links=[link]),
        tracer.start_span("dated", context=parent, start_time=1),
    ):
        assert span.is_recording()
        assert not isinstance(span, LeanSpan)
        span.end()


def test_an_unsampled_parent_gives_a_non_recording_span_like_the_sdk() -> None:
    contexts = []
    for kind in (TracerProvider, LeanTracerProvider):
        provider, exporter = _provider(kind)
        span = provider.get_tracer("t").start_span("x", context=extract({"traceparent": UNSAMPLED}))
        assert not span.is_recording()
        span.end()
        assert exporter.get_finished_spans() == ()
        contexts.append(span.get_span_context())
    assert contexts[0] == contexts[1]
