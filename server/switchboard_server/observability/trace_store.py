"""In-memory store of recent traces, fed by OTLP ``ExportTraceServiceRequest``s.

Thread-safe (the receiver's gRPC handler writes, its HTTP query thread reads). Bounded:
at most ``max_traces`` traces (least recently updated dropped first) and
``max_spans_per_trace`` spans per trace.

A span from an export request is kept as its OTLP bytes and turned into a
:class:`SpanRecord` only when a query reads it: most spans are never looked at, and
decoding every attribute of every span (an Envoy span has a dozen or more) into
Python on arrival would spend CPU on the same cores as the traced services.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, cast

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class SpanRecord:
    """One span as the query API returns it (ids in lowercase hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: str
    start_unix_nano: int
    end_unix_nano: int
    status: str
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The gRPC method of the span: its name (apps) or ``grpc.path`` (Envoy)."""
        path = self.attributes.get("grpc.path")
        return str(path) if path else self.name

    @property
    def duration_ms(self) -> float:
        return max(self.end_unix_nano - self.start_unix_nano, 0) / 1e6

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpanRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, kind)
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return None if kind is None else str(getattr(value, kind))


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def _enum_name(enum: Any, number: int, prefix: str) -> str:
    try:
        return str(enum.Name(number)).removeprefix(prefix)
    except ValueError:
        return str(number)


def _service_of(resource_spans: trace_pb2.ResourceSpans) -> str:
    return str(_attributes(resource_spans.resource.attributes).get("service.name", "unknown"))


def span_record(service: str, span: trace_pb2.Span) -> SpanRecord:
    """One OTLP span of ``service`` as a record."""
    return SpanRecord(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        service=service,
        name=span.name,
        kind=_enum_name(trace_pb2.Span.SpanKind, span.kind, "SPAN_KIND_"),
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=span.end_time_unix_nano,
        status=_enum_name(trace_pb2.Status.StatusCode, span.status.code, "STATUS_CODE_"),
        attributes=_attributes(span.attributes),
    )


class _Encoded(NamedTuple):
    """A span kept as it arrived: decoded by :func:`span_record` when first read."""

    service: str
    span: bytes  # a serialised opentelemetry.proto.trace.v1.Span

    def decode(self) -> SpanRecord:
        return span_record(self.service, trace_pb2.Span.FromString(self.span))


_Entry = tuple[str, str, SpanRecord | _Encoded]  # trace id, span id (hex), the span


class TraceStore:
    """Recent traces by id, most recently updated last."""

    def __init__(self, max_traces: int = 1000, max_spans_per_trace: int = 2000) -> None:
        self.max_traces = max_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._traces: OrderedDict[str, dict[str, SpanRecord | _Encoded]] = OrderedDict()
        self._lock = threading.Lock()
        self.spans_received = 0
        self.spans_dropped = 0

    def add(self, spans: list[SpanRecord]) -> None:
        self._add([(span.trace_id, span.span_id, span) for span in spans])

    def add_request(self, request: otlp.ExportTraceServiceRequest) -> None:
        """Keep the spans of an export request, each decoded only when first read."""
        entries: list[_Entry] = []
        for resource_spans in request.resource_spans:
            service = _service_of(resource_spans)
            for scope_spans in resource_spans.scope_spans:
                entries.extend(
                    (
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        _Encoded(service, span.SerializeToString()),
                    )
                    for span in scope_spans.spans
                )
        self._add(entries)

    def _add(self, entries: list[_Entry]) -> None:
        with self._lock:
            for trace_id, span_id, span in entries:
                self.spans_received += 1
                trace = self._traces.setdefault(trace_id, {})
                self._traces.move_to_end(trace_id)
                if span_id not in trace and len(trace) >= self.max_spans_per_trace:
                    self.spans_dropped += 1
                    continue
                trace[span_id] = span
            while len(self._traces) > self.max_traces:
                _, dropped = self._traces.popitem(last=False)
                self.spans_dropped += len(dropped)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """The spans of one trace ordered by start time (empty if unknown)."""
        with self._lock:
            trace = self._traces.get(trace_id.lower(), {})
            for span_id, span in trace.items():
                if isinstance(span, _Encoded):
                    trace[span_id] = span.decode()  # a value replaced: the dict keeps its size
            spans = cast(list[SpanRecord], list(trace.values()))
        return sorted(spans, key=lambda s: (s.start_unix_nano, s.end_unix_nano))

    def recent(
        self, limit: int = 20, keep: Callable[[list[SpanRecord]], bool] | None = None
    ) -> list[list[SpanRecord]]:
        """Up to ``limit`` traces (those ``keep`` accepts), most recently updated first."""
        with self._lock:
            ids = list(self._traces)[::-1]
        out: list[list[SpanRecord]] = []
        for trace_id in ids:
            if len(out) >= limit:
                break
            spans = self.trace(trace_id)
            if spans and (keep is None or keep(spans)):
                out.append(spans)
        return out

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
