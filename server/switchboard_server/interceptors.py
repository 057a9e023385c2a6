"""The server's own interceptor: correlation, error mapping, RED metrics and one access
line per RPC, in a single layer.

For every RPC it

* takes the correlation id from ``x-correlation-id`` or ``x-request-id`` (Envoy),
  or generates one, binds it to the structlog context and returns it to the caller
  in the trailing metadata (trailing, so an error stays a trailers-only response
  that Envoy can retry on);
* with tracing off and ``propagate_trace_context``, makes the caller's ``traceparent``
  itself the current context: outbound calls forward it and log lines carry its trace
  id, at no span cost (with tracing on, OpenTelemetry's server interceptor runs
  outside this one and makes the server span current instead);
* turns a ``SwitchboardError`` into its canonical status with rich details, and an
  unexpected exception into INTERNAL without leaking its text (through the servicer
  context it is given, so OpenTelemetry's wrapper of it sees the status too);
* counts it in ``grpc_server_*`` with its final code (the latency observation carries
  the current trace as its exemplar);
* writes one structured access line (service, method, code, duration_ms, peer).

Each method's handler is wrapped once (``WrappingInterceptor``), not on every call.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import Token
from typing import Any, NoReturn

import grpc
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate

from switchboard_server.errors import SwitchboardError
from switchboard_server.handler_wrapping import Behavior, WrappingInterceptor, iterate_responses
from switchboard_server.observability.metrics import (
    GrpcMetrics,
    MethodSeries,
    RpcMeter,
    grpc_type_of,
    split_method,
    status_code_of,
)
from switchboard_server.rpc_errors import to_grpc_status

log = structlog.get_logger("switchboard.access")

CORRELATION_HEADERS = ("x-correlation-id", "x-request-id")
MAX_CORRELATION_ID = 128
TRACEPARENT = "traceparent"
_UNKNOWN = grpc.StatusCode.UNKNOWN


def correlation_id_from(headers: dict[str, str]) -> str:
    """The caller's correlation id, or a new one; bounded and printable."""
    for header in CORRELATION_HEADERS:
        value = headers.get(header, "").strip()
        if value and len(value) <= MAX_CORRELATION_ID and value.isprintable():
            return value
    return secrets.token_hex(16)


def text_headers(metadata: Any) -> dict[str, str]:
    """Invocation metadata as {lower-case key: value}, binary (``-bin``) entries left out."""
    return {k.lower(): v for k, v in (metadata or ()) if isinstance(v, str)}


class _ServedMethod:
    """What every call of one served method shares."""

    __slots__ = (
        "method",
        "propagate_trace_context",
        "request_streaming",
        "series",
        "service",
    )

    def __init__(
        self,
        full: str,
        series: MethodSeries | None,
        propagate_trace_context: bool,
        request_streaming: bool,
    ) -> None:
        self.service, self.method = split_method(full)
        self.series = series
        self.propagate_trace_context = propagate_trace_context
        self.request_streaming = request_streaming


class _Call:
    """Book-keeping for one RPC: correlation, trace context, meter, outcome and the access
    line."""

    __slots__ = (
        "_token",
        "context",
        "correlation_id",
        "error",
        "meter",
        "peer",
        "served",
        "started",
    )

    def __init__(self, served: _ServedMethod, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.served = served
        self.context = context
        headers = text_headers(context.invocation_metadata())
        self.correlation_id = correlation_id_from(headers)
        # Read while the call is live: peer() on a finished or cancelled call can crash
        # grpc's core (seen once in finish(), after a deadline test).
        self.peer = context.peer()
        self.error: BaseException | None = None  # what left the servicer
        self._token: Token[otel_context.Context] | None = None
        if served.propagate_trace_context and TRACEPARENT in headers:
            self._token = otel_context.attach(propagate.extract(headers))
        self.meter = RpcMeter(served.series) if served.series is not None else None
        self.started = time.perf_counter()
        structlog.contextvars.bind_contextvars(correlation_id=self.correlation_id)
        context.set_trailing_metadata((("x-correlation-id", self.correlation_id),))

    def received(self, request: Any) -> Any:
        """The request as the servicer gets it, counted as received (a stream's
        messages one by one as the servicer reads them)."""
        if self.served.request_streaming:
            return _counted(request, self.meter)
        if self.meter is not None:
            self.meter.received()
        return request

    def sent(self) -> None:
        if self.meter is not None:
            self.meter.sent()

    async def fail(self, exc: BaseException) -> NoReturn:
        """Keep what left the servicer and raise it on: an abort or a cancellation as it
        is, a ``SwitchboardError`` as an abort with its status, anything else as an
        abort with INTERNAL (the error is logged, its text not sent)."""
        self.error = exc
        if isinstance(exc, grpc.aio.AbortError) or not isinstance(exc, Exception):
            raise exc
        if isinstance(exc, SwitchboardError):
            status = to_grpc_status(exc)
            code, details, trailing = status.code, status.details, status.trailing_metadata
        else:
            log.error("rpc.unhandled_exception", method=self.served.method, exc_info=exc)
            code, details, trailing = grpc.StatusCode.INTERNAL, "internal error", ()
        try:
            await self.context.abort(
                code,
                details,
                trailing_metadata=(*trailing, ("x-correlation-id", self.correlation_id)),
            )
        except BaseException as aborted:
            self.error = aborted
            raise
        raise AssertionError("abort() returned")  # grpc.aio's abort always raises

    def finish(self) -> None:
        """Settle the call: its final code, metrics, access line, trace context."""
        context, error = self.context, self.error
        set_code = status_code_of(context.code())  # by an abort or set_code()
        if set_code is not None:
            code = set_code
        elif error is not None:  # an AbortError without a code, or a cancellation
            code = _UNKNOWN if isinstance(error, Exception) else grpc.StatusCode.CANCELLED
        elif context.cancelled():
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.OK
        if self.meter is not None:
            self.meter.done(code)  # the server span still current: its trace is the exemplar
        if log.is_enabled_for(logging.INFO):
            log.info(
                "rpc",
                kind="server",
                service=self.served.service,
                method=self.served.method,
                code=code.name,
                duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
                peer=self.peer,
            )
        structlog.contextvars.unbind_contextvars("correlation_id")
        if self._token is not None:
            otel_context.detach(self._token)


async def _counted(requests: AsyncIterator[Any], meter: RpcMeter | None) -> AsyncIterator[Any]:
    async for request in requests:
        if meter is not None:
            meter.received()
        yield request


def _wrap_unary(served: _ServedMethod, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(served, context)
        request = call.received(request)
        try:
            response = await inner(request, context)
            call.sent()
            return response
        except BaseException as exc:
            await call.fail(exc)
        finally:
            call.finish()

    return behavior


def _wrap_streaming(
    served: _ServedMethod, inner: Callable[..., Any]
) -> Callable[..., AsyncIterator[Any]]:
    async def behavior(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        call = _Call(served, context)
        request = call.received(request)
        try:
            async for item in iterate_responses(inner(request, context)):
                call.sent()
                yield item
        except BaseException as exc:  # incl. GeneratorExit: the stream was closed
            await call.fail(exc)
        finally:
            call.finish()

    return behavior


class ServerInterceptor(WrappingInterceptor):
    """Correlation, error mapping, ``grpc_server_*`` metrics (with ``metrics``) and the
    access line, for every handler kind."""

    def __init__(
        self,
        *,
        metrics: GrpcMetrics | None = None,
        propagate_trace_context: bool = False,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._propagate_trace_context = propagate_trace_context

    def wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        series = None
        if self._metrics is not None:
            kind = grpc_type_of(request_streaming, response_streaming)
            series = self._metrics.series(kind, method)
        served = _ServedMethod(method, series, self._propagate_trace_context, request_streaming)
        if response_streaming:
            return _wrap_streaming(served, behavior)
        return _wrap_unary(served, behavior)
