"""The OTLP/gRPC span exporter, with a memo for what repeats from span to span.

``OTLPSpanExporter`` (opentelemetry-exporter-otlp-proto-grpc) translates every span with
``encode_spans``: a ``KeyValue`` and an ``AnyValue`` message per attribute, built in
Python from the attribute's type, a ``Status`` per span, and a JSON dump of the
resource per span to group by it. That cost ~65 us per span here, more than recording
the span.

:class:`SpanEncoder` builds the same ``ExportTraceServiceRequest`` from the same
protobuf messages, but keeps the ones that repeat: every attribute ``(key, value)``
pair (method, service, status code, intent, ...), statuses, the resource (grouped by
identity: a provider has one) and the instrumentation scopes; ~28 us per span. Events,
links and trace state go through the library's own encoders. The exporter, its retries
and its gRPC stub stay the library's; a test checks the request equals
``encode_spans``'s for spans of every shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_key_value,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _encode_events,
    _encode_links,
    _encode_trace_state,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope as PbScope
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, SpanFlags, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

_FLAGS_LOCAL = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_FLAGS_REMOTE = _FLAGS_LOCAL | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_SCALARS = (str, bool, int, float, bytes)


class SpanEncoder:
    """``encode_spans`` for finished SDK spans, with a memo of the repeating messages.

    Each part of the memo is bounded by ``max_cached`` entries and starts over when
    full (a high-cardinality attribute only costs the first encoding of each value).
    """

    def __init__(self, max_cached: int = 4096) -> None:
        self._max = max_cached
        self._attributes: dict[tuple[Any, ...], KeyValue] = {}
        self._statuses: dict[tuple[int, str | None], Status] = {}
        # id(resource) -> (resource, its message): kept, so the id stays its own
        self._resources: dict[int, tuple[Resource, PbResource]] = {}
        self._scopes: dict[InstrumentationScope | None, PbScope | None] = {}

    def request(self, spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        """The ``ExportTraceServiceRequest`` that ``encode_spans(spans)`` builds."""
        groups: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[PbSpan]]]] = {}
        for span in spans:
            group = groups.get(id(span.resource))
            if group is None:
                group = groups[id(span.resource)] = (span.resource, {})
            group[1].setdefault(span.instrumentation_scope or None, []).append(self._span(span))
        return ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=self._resource(resource),
                    scope_spans=[
                        ScopeSpans(
                            scope=self._scope(scope),
                            spans=encoded,
                            schema_url=(scope.schema_url or "") if scope else "",
                        )
                        for scope, encoded in scopes.items()
                    ],
                    schema_url=resource.schema_url,
                )
                for resource, scopes in groups.values()
            ]
        )

    def _resource(self, resource: Resource) -> PbResource:
        # by identity: Resource's own hash dumps it to JSON
        memo = self._resources.get(id(resource))
        if memo is None or memo[0] is not resource:
            if len(self._resources) >= self._max:
                self._resources.clear()
            memo = self._resources[id(resource)] = (resource, _encode_resource(resource))
        return memo[1]

    def _scope(self, scope: InstrumentationScope | None) -> PbScope | None:
        if scope not in self._scopes:
            if len(self._scopes) >= self._max:
                self._scopes.clear()
            self._scopes[scope] = _encode_instrumentation_scope(scope)  # type: ignore[arg-type]
        return self._scopes[scope]

    def _attribute(self, key: str, value: Any) -> KeyValue:
        kind = type(value)
        if kind in _SCALARS:
            memo_key: tuple[Any, ...] = (key, kind, value)
        elif kind is tuple and all(type(v) in _SCALARS for v in value):
            memo_key = (key, kind, value, tuple(type(v) for v in value))
        else:
            return _encode_key_value(key, value)
        encoded = self._attributes.get(memo_key)
        if encoded is None:
            if len(self._attributes) >= self._max:
                self._attributes.clear()
            encoded = self._attributes[memo_key] = _encode_key_value(key, value)
        return encoded

    def _status(self, code: int, description: str | None) -> Status:
        encoded = self._statuses.get((code, description))
        if encoded is None:
            if len(self._statuses) >= self._max:
                self._statuses.clear()
            encoded = Status(code=code, message=description)  # type: ignore[arg-type]
            self._statuses[(code, description)] = encoded
        return encoded

    def _span(self, span: ReadableSpan) -> PbSpan:
        context = span.get_span_context()
        assert context is not None  # a finished SDK span always has one
        parent = span.parent
        attributes = span.attributes  # each ReadableSpan property read builds its value
        status = span.status
        fields: dict[str, Any] = dict(  # as the library passes them: None leaves a field unset
            trace_id=context.trace_id.to_bytes(16, "big"),
            span_id=context.span_id.to_bytes(8, "big"),
            trace_state=_encode_trace_state(context.trace_state),
            parent_span_id=parent.span_id.to_bytes(8, "big") if parent is not None else None,
            name=span.name,
            kind=span.kind.value + 1,  # OTLP's SpanKind is the API's plus one (0: unset)
            start_time_unix_nano=span.start_time,
            end_time_unix_nano=span.end_time,
            attributes=[self._attribute(k, v) for k, v in attributes.items()]
            if attributes
            else None,
            events=_encode_events(span.events),
            links=_encode_links(span.links),
            status=self._status(status.status_code.value, status.description),
            dropped_attributes_count=span.dropped_attributes,
            dropped_events_count=span.dropped_events,
            dropped_links_count=span.dropped_links,
            flags=_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL,
        )
        return PbSpan(**fields)


class OtlpSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` whose requests are built by a :class:`SpanEncoder`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoder = SpanEncoder()

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return self._encoder.request(data)
