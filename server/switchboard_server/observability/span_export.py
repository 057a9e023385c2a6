"""The OTLP/gRPC span exporter, with a cheaper encoding of the spans it sends.

``OTLPSpanExporter`` (opentelemetry-exporter-otlp-proto-grpc) turns every span into
protobuf message objects in pure Python (``encode_spans``): a ``Span``, a ``KeyValue``
and an ``AnyValue`` per attribute, a ``Status``, and a JSON dump of the resource per
span to group by it. That cost ~60-80 us per span here, more than recording the span.

:class:`SpanEncoder` writes the same ``ExportTraceServiceRequest`` in the protobuf wire
format directly. What repeats from span to span is encoded once and kept: every
attribute ``(key, value)`` pair (method, service, peer, intent, ...), statuses, the
resource and the instrumentation scopes. Events and links (rare here) go through the
library's own encoders. The result is parsed back into the request message once per
batch, so the exporter, its retries and its gRPC stub stay exactly the library's; a
test checks the request equals ``encode_spans``'s for spans of every shape.
"""

from __future__ import annotations

import struct
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
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

_FLAGS_LOCAL = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_FLAGS_REMOTE = _FLAGS_LOCAL | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_KIND = {kind: bytes((0x30, kind.value + 1)) for kind in SpanKind}  # field 6, OTLP = API + 1
_SCALARS = (str, bool, int, float, bytes)
_pack_fixed64 = struct.Struct("<Q").pack
# Span fields: (number << 3) | wire type, as one byte (two for flags, field 16).
_TRACE_ID, _SPAN_ID, _TRACE_STATE, _PARENT = b"\x0a\x10", b"\x12\x08", b"\x1a", b"\x22\x08"
_NAME, _START, _END, _ATTRIBUTE = b"\x2a", b"\x39", b"\x41", 0x4A
_DROPPED_ATTRIBUTES, _EVENT, _DROPPED_EVENTS, _LINK, _DROPPED_LINKS = 0x50, 0x5A, 0x60, 0x6A, 0x70
_STATUS, _FLAGS = b"\x7a", b"\x85\x01"
_FLAGS_LOCAL_BYTES = struct.pack("<I", _FLAGS_LOCAL)
_FLAGS_REMOTE_BYTES = struct.pack("<I", _FLAGS_REMOTE)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (one-byte ``tag``)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _string(tag: bytes, text: str) -> bytes:
    data = text.encode()
    return tag + _varint(len(data)) + data


class SpanEncoder:
    """``encode_spans`` for finished SDK spans, in the wire format, with a memo.

    The memo holds encoded attribute pairs, statuses, resources and scopes; each part is
    bounded by ``max_cached`` entries and starts over when full (a peer port or a
    high-cardinality attribute only costs the first encoding of each value).
    """

    def __init__(self, max_cached: int = 4096) -> None:
        self._max = max_cached
        self._attributes: dict[tuple[Any, ...], bytes] = {}
        self._statuses: dict[tuple[int, str | None], bytes] = {}
        # id(resource) -> (resource, its encoding): kept, so the id stays its own
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}

    def request(self, spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        """The ``ExportTraceServiceRequest`` that ``encode_spans(spans)`` builds."""
        return ExportTraceServiceRequest.FromString(self.encode(spans))

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialized request: spans grouped by resource, then by scope, in order."""
        groups: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = {}
        for span in spans:
            group = groups.get(id(span.resource))
            if group is None:
                group = groups[id(span.resource)] = (span.resource, {})
            scope = span.instrumentation_scope or None
            group[1].setdefault(scope, []).append(self._span(span))
        out = []
        for resource, scopes in groups.values():
            parts = [self._resource(resource)]
            for scope, encoded in scopes.items():
                body = self._scope(scope) + b"".join(encoded)
                if scope is not None and scope.schema_url:
                    body += _string(b"\x1a", scope.schema_url)
                parts.append(_field(0x12, body))
            if resource.schema_url:
                parts.append(_string(b"\x1a", resource.schema_url))
            out.append(_field(0x0A, b"".join(parts)))
        return b"".join(out)

    def _resource(self, resource: Resource) -> bytes:
        # by identity (a provider has one resource); Resource's own hash dumps it to JSON
        memo = self._resources.get(id(resource))
        if memo is None or memo[0] is not resource:
            if len(self._resources) >= self._max:
                self._resources.clear()
            encoded = _field(0x0A, _encode_resource(resource).SerializeToString())
            memo = self._resources[id(resource)] = (resource, encoded)
        return memo[1]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        encoded = self._scopes.get(scope)
        if encoded is None:
            if len(self._scopes) >= self._max:
                self._scopes.clear()
            scope_message = _encode_instrumentation_scope(scope)  # type: ignore[arg-type]
            encoded = self._scopes[scope] = _field(0x0A, scope_message.SerializeToString())
        return encoded

    def _attribute(self, key: str, value: Any) -> bytes:
        kind = type(value)
        if kind in _SCALARS:
            memo_key: tuple[Any, ...] = (key, kind, value)
        elif kind is tuple and all(type(v) in _SCALARS for v in value):
            memo_key = (key, kind, value, tuple(type(v) for v in value))
        else:
            return _field(_ATTRIBUTE, _encode_key_value(key, value).SerializeToString())
        encoded = self._attributes.get(memo_key)
        if encoded is None:
            if len(self._attributes) >= self._max:
                self._attributes.clear()
            encoded = _field(_ATTRIBUTE, _encode_key_value(key, value).SerializeToString())
            self._attributes[memo_key] = encoded
        return encoded

    def _status(self, code: int, description: str | None) -> bytes:
        encoded = self._statuses.get((code, description))
        if encoded is None:
            if len(self._statuses) >= self._max:
                self._statuses.clear()
            status = Status(code=code, message=description).SerializeToString()  # type: ignore[arg-type]
            encoded = self._statuses[(code, description)] = _STATUS + _varint(len(status)) + status
        return encoded

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        assert context is not None  # a finished SDK span always has one
        parent = span.parent
        attributes = span.attributes  # each ReadableSpan property read builds its value
        parts = [
            _TRACE_ID,
            context.trace_id.to_bytes(16, "big"),
            _SPAN_ID,
            context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
            parts.append(_string(_TRACE_STATE, state))
        if parent is not None:
            parts += (_PARENT, parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_string(_NAME, span.name))
        parts.append(_KIND[span.kind])
        if span.start_time:
            parts += (_START, _pack_fixed64(span.start_time))
        if span.end_time:
            parts += (_END, _pack_fixed64(span.end_time))
        if attributes:
            attribute = self._attribute
            parts += [attribute(key, value) for key, value in attributes.items()]
        parts += self._rare_fields(span)
        status = span.status
        parts.append(self._status(status.status_code.value, status.description))
        remote = parent is not None and parent.is_remote
        parts += (_FLAGS, _FLAGS_REMOTE_BYTES if remote else _FLAGS_LOCAL_BYTES)
        return _field(0x12, b"".join(parts))

    @staticmethod
    def _rare_fields(span: ReadableSpan) -> list[bytes]:
        """Dropped counts, events and links: mostly absent, encoded by the library."""
        parts = []
        if span.dropped_attributes:
            parts.append(bytes((_DROPPED_ATTRIBUTES,)) + _varint(span.dropped_attributes))
        events = span.events
        if events:
            parts += [_field(_EVENT, e.SerializeToString()) for e in _encode_events(events) or ()]
        if span.dropped_events:
            parts.append(bytes((_DROPPED_EVENTS,)) + _varint(span.dropped_events))
        links = span.links
        if links:
            parts += [_field(_LINK, li.SerializeToString()) for li in _encode_links(links) or ()]
        if span.dropped_links:
            parts.append(bytes((_DROPPED_LINKS,)) + _varint(span.dropped_links))
        return parts


class OtlpSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` whose requests are built by a :class:`SpanEncoder`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoder = SpanEncoder()

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return self._encoder.request(data)
