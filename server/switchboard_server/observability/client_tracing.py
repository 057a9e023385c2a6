"""Traced outbound calls in one interceptor per call kind: client span and telemetry.

With tracing on, the library's aio client interceptors stacked outside our
:mod:`.client` ones cost two layers per call: two interceptor coroutines, two
``Metadata``/``ClientCallDetails`` rebuilds, ``call.code()`` awaited by both (and
``call.details()`` by the library even on success), a done-callback to end the span.
The classes here are the library's per-kind interceptors (``opentelemetry-instrumentation-grpc``,
``_aio_client``) doing both jobs in one layer:

* the same client span (name, kind, attributes, status, parent, scope) from the
  library's tracer; the fixed attributes of each method are built once;
* ``traceparent`` (the global propagator) and ``x-correlation-id`` added to the
  metadata in one rebuild;
* ``grpc_client_*`` metered and the client access line written with the span current
  (see :class:`~.client.ClientTelemetry`).

One difference, on purpose: a call that is cancelled or raises before it has a status
ends its span with ERROR (the library leaves such a span open, so it is never exported).
A test compares the spans with the library's for every call kind, ok and failing.
Calls with instrumentation suppressed go through the plain telemetry interceptors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from contextvars import Token
from typing import Any, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.grpc._aio_client import (
    StreamStreamAioClientInterceptor,
    StreamUnaryAioClientInterceptor,
    UnaryStreamAioClientInterceptor,
    UnaryUnaryAioClientInterceptor,
)
from opentelemetry.instrumentation.grpc._client import _carrier_setter
from opentelemetry.propagate import inject
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_GRPC_STATUS_CODE,
)
from opentelemetry.trace.status import Status, StatusCode

from switchboard_server.observability.client import (
    CORRELATION_HEADER,
    ClientTelemetry,
    StreamStreamTelemetry,
    StreamUnaryTelemetry,
    UnaryStreamTelemetry,
    UnaryUnaryTelemetry,
    _Outbound,
)
from switchboard_server.observability.metrics import GrpcType, status_code_of
from switchboard_server.observability.rpc_spans import Attributes, memoised, rpc_attributes

Continuation = Callable[[Any, Any], Awaitable[Any]]
_OK = grpc.StatusCode.OK


def _traced_details(details: grpc.aio.ClientCallDetails, correlation_id: str) -> Any:
    """``details`` with the current trace context and the correlation id added."""
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    inject(metadata, setter=_carrier_setter)  # as the library: replaces a stale traceparent
    if CORRELATION_HEADER not in metadata:
        metadata.add(CORRELATION_HEADER, correlation_id)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _Traced:
    """What the four kinds share; mixed into the library's per-kind interceptors."""

    _tracer: trace.Tracer
    add_error_details_to_span: Callable[[trace.Span, BaseException], None]
    _wrap_stream_response: Callable[[trace.Span, Any], Any]

    def _setup(self, telemetry: ClientTelemetry) -> None:
        self._t = telemetry
        self._attributes: dict[str, Attributes] = {}

    def _skipped(self, details: grpc.aio.ClientCallDetails) -> bool:
        """Instrumentation suppressed (or filtered out: the library's rule)."""
        return bool(self.tracing_skipped(details))  # type: ignore[attr-defined]

    def _span_attributes(self, method: str) -> Attributes:
        # the library's, in its order; the SDK copies them into each span
        return memoised(self._attributes, method, rpc_attributes)

    def _begin(
        self, grpc_type: GrpcType, details: grpc.aio.ClientCallDetails
    ) -> tuple[_Outbound, trace.Span, Token[otel_context.Context], Any]:
        """Meter the call, start its span and make it current; the outbound details."""
        method = details.method
        name = method.decode() if isinstance(method, bytes) else method
        outbound = self._t.outbound(grpc_type, method)
        span = self._tracer.start_span(
            name,
            kind=trace.SpanKind.CLIENT,
            attributes=self._span_attributes(name),
            record_exception=False,
            set_status_on_exception=False,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        if grpc_type in ("unary", "server_stream"):
            outbound.meter.sent()
        return outbound, span, token, _traced_details(details, outbound.correlation_id)

    def _failed(self, outbound: _Outbound, span: trace.Span, exc: BaseException) -> None:
        """The call raised before it had a status (an RpcError, a cancellation)."""
        if isinstance(exc, grpc.RpcError):
            code = status_code_of(exc.code()) or grpc.StatusCode.UNKNOWN
        elif isinstance(exc, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.UNKNOWN
        outbound.finish(code)
        self.add_error_details_to_span(span, exc)
        span.end()

    async def _unary_response(
        self, grpc_type: GrpcType, continuation: Continuation, details: Any, request: Any
    ) -> Any:
        outbound, span, token, details = self._begin(grpc_type, details)
        try:
            try:
                call = await continuation(details, request)
                code = status_code_of(await call.code()) or grpc.StatusCode.UNKNOWN
                if code is not _OK:  # the library's done-callback, but OK is already set
                    span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
                    span.set_status(Status(StatusCode.ERROR, await call.details()))
            except BaseException as exc:
                self._failed(outbound, span, exc)
                raise
            outbound.finish(code, response_received=True)
            span.end()
            return call
        finally:
            otel_context.detach(token)

    async def _stream_response(
        self, grpc_type: GrpcType, continuation: Continuation, details: Any, request: Any
    ) -> Any:
        outbound, span, token, details = self._begin(grpc_type, details)
        try:
            try:
                call = await continuation(details, request)
            except BaseException as exc:
                self._failed(outbound, span, exc)
                raise
            self._t.settle_later(outbound, call)  # its task copies the context: span current
            return self._wrap_stream_response(span, call)  # ends the span with the stream
        finally:
            otel_context.detach(token)


class TracedUnaryUnary(_Traced, UnaryUnaryAioClientInterceptor):
    def __init__(self, tracer: trace.Tracer, telemetry: ClientTelemetry) -> None:
        UnaryUnaryAioClientInterceptor.__init__(self, tracer)  # type: ignore[no-untyped-call]
        self._setup(telemetry)
        self._plain = UnaryUnaryTelemetry(telemetry)

    async def intercept_unary_unary(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        if self._skipped(client_call_details):
            return await self._plain.intercept_unary_unary(
                continuation, client_call_details, request
            )
        return await self._unary_response("unary", continuation, client_call_details, request)


class TracedStreamUnary(_Traced, StreamUnaryAioClientInterceptor):
    def __init__(self, tracer: trace.Tracer, telemetry: ClientTelemetry) -> None:
        StreamUnaryAioClientInterceptor.__init__(self, tracer)  # type: ignore[no-untyped-call]
        self._setup(telemetry)
        self._plain = StreamUnaryTelemetry(telemetry)

    async def intercept_stream_unary(
        self,
        continuation: Continuation,
        client_call_details: Any,
        request_iterator: Iterable[Any] | AsyncIterable[Any],
    ) -> Any:
        if self._skipped(client_call_details):
            return await self._plain.intercept_stream_unary(
                continuation, client_call_details, request_iterator
            )
        return await self._unary_response(
            "client_stream", continuation, client_call_details, request_iterator
        )


class TracedUnaryStream(_Traced, UnaryStreamAioClientInterceptor):
    def __init__(self, tracer: trace.Tracer, telemetry: ClientTelemetry) -> None:
        UnaryStreamAioClientInterceptor.__init__(self, tracer)  # type: ignore[no-untyped-call]
        self._setup(telemetry)
        self._plain = UnaryStreamTelemetry(telemetry)

    async def intercept_unary_stream(  # type: ignore[override]
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        if self._skipped(client_call_details):
            return await self._plain.intercept_unary_stream(
                continuation, client_call_details, request
            )
        return await self._stream_response(
            "server_stream", continuation, client_call_details, request
        )


class TracedStreamStream(_Traced, StreamStreamAioClientInterceptor):
    def __init__(self, tracer: trace.Tracer, telemetry: ClientTelemetry) -> None:
        StreamStreamAioClientInterceptor.__init__(self, tracer)  # type: ignore[no-untyped-call]
        self._setup(telemetry)
        self._plain = StreamStreamTelemetry(telemetry)

    async def intercept_stream_stream(  # type: ignore[override]
        self,
        continuation: Continuation,
        client_call_details: Any,
        request_iterator: Iterable[Any] | AsyncIterable[Any],
    ) -> Any:
        if self._skipped(client_call_details):
            return await self._plain.intercept_stream_stream(
                continuation, client_call_details, request_iterator
            )
        return await self._stream_response(
            "bidi_stream", continuation, client_call_details, request_iterator
        )


def traced_client_interceptors(
    tracer_provider: trace.TracerProvider, telemetry: ClientTelemetry
) -> list[grpc.aio.ClientInterceptor]:
    """One traced interceptor per call kind, all sharing ``telemetry`` (which must not
    propagate the trace context itself: these inject it)."""
    # the library's tracer (scope name, version, schema URL) for this provider
    library = aio_client_interceptors(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    tracer: trace.Tracer = library[0]._tracer
    kinds = [
        TracedUnaryUnary(tracer, telemetry),
        TracedUnaryStream(tracer, telemetry),
        TracedStreamUnary(tracer, telemetry),
        TracedStreamStream(tracer, telemetry),
    ]
    return cast(list[grpc.aio.ClientInterceptor], kinds)
