"""Server interceptor: correlation id, domain-error mapping and one access line per RPC.

For every RPC it

* takes the correlation id from ``x-correlation-id`` or ``x-request-id`` (Envoy),
  or generates one, binds it to the structlog context and returns it to the caller
  in the trailing metadata (trailing, so an error stays a trailers-only response
  that Envoy can retry on);
* turns a ``SwitchboardError`` into its canonical status with rich details, and an
  unexpected exception into INTERNAL without leaking its text;
* writes one structured access line (service, method, code, duration_ms, peer);
* with ``propagate_trace_context`` (tracing off, so no OpenTelemetry interceptor runs),
  makes the caller's W3C ``traceparent`` the current context for the call: outbound
  calls forward it and log lines carry its trace id, at no span cost.

Each method's handler is wrapped once (``WrappingInterceptor``), not on every call.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import Token
from typing import Any

import grpc
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate

from switchboard_server.errors import SwitchboardError
from switchboard_server.handlers import Behavior, WrappingInterceptor, iterate_responses
from switchboard_server.observability.metrics import split_method
from switchboard_server.status import to_grpc_status

log = structlog.get_logger("switchboard.access")

CORRELATION_HEADERS = ("x-correlation-id", "x-request-id")
MAX_CORRELATION_ID = 128
TRACEPARENT = "traceparent"


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


class _Call:
    """Book-keeping for one RPC: correlation, outcome and the access line."""

    __slots__ = (
        "_token",
        "code",
        "context",
        "correlation_id",
        "method",
        "peer",
        "service",
        "started",
    )

    def __init__(
        self,
        service: str,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        propagate_trace_context: bool,
    ) -> None:
        self.service, self.method = service, method
        self.context = context
        headers = text_headers(context.invocation_metadata())
        self.correlation_id = correlation_id_from(headers)
        # Read while the call is live: peer() on a finished or cancelled call can crash
        # grpc's core (seen once in finish(), after a deadline test).
        self.peer = context.peer()
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self._token: Token[otel_context.Context] | None = None
        if propagate_trace_context and TRACEPARENT in headers:
            self._token = otel_context.attach(propagate.extract(headers))
        structlog.contextvars.bind_contextvars(correlation_id=self.correlation_id)
        context.set_trailing_metadata((("x-correlation-id", self.correlation_id),))

    async def fail(self, exc: BaseException) -> None:
        """Translate exc into a status on the context (raises AbortError)."""
        if isinstance(exc, SwitchboardError):
            status = to_grpc_status(exc)
            self.code = status.code
            await self.context.abort(
                status.code,
                status.details,
                trailing_metadata=(
                    *status.trailing_metadata,
                    ("x-correlation-id", self.correlation_id),
                ),
            )
        log.error("rpc.unhandled_exception", method=self.method, exc_info=exc)
        self.code = grpc.StatusCode.INTERNAL
        await self.context.abort(
            grpc.StatusCode.INTERNAL,
            "internal error",
            trailing_metadata=(("x-correlation-id", self.correlation_id),),
        )

    def finish(self) -> None:
        code = self.code
        if code is grpc.StatusCode.OK:
            context_code = self.context.code()
            if isinstance(context_code, grpc.StatusCode):
                code = context_code
            elif self.context.cancelled():
                code = grpc.StatusCode.CANCELLED
        if log.is_enabled_for(logging.INFO):
            log.info(
                "rpc",
                kind="server",
                service=self.service,
                method=self.method,
                code=code.name,
                duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
                peer=self.peer,
            )
        structlog.contextvars.unbind_contextvars("correlation_id")
        if self._token is not None:
            otel_context.detach(self._token)


def _wrap_unary(
    full_method: str, inner: Callable[..., Awaitable[Any]], propagate_trace_context: bool
) -> Callable[..., Any]:
    service, method = split_method(full_method)

    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(service, method, context, propagate_trace_context)
        try:
            return await inner(request, context)
        except grpc.aio.AbortError:
            raise
        except (SwitchboardError, Exception) as exc:  # mapped to a status
            await call.fail(exc)
        finally:
            call.finish()

    return behavior


def _wrap_streaming(
    full_method: str, inner: Callable[..., Any], propagate_trace_context: bool
) -> Callable[..., AsyncIterator[Any]]:
    service, method = split_method(full_method)

    async def behavior(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        call = _Call(service, method, context, propagate_trace_context)
        try:
            async for item in iterate_responses(inner(request, context)):
                yield item
        except grpc.aio.AbortError:
            raise
        except (SwitchboardError, Exception) as exc:  # mapped to a status
            await call.fail(exc)
        finally:
            call.finish()

    return behavior


class ServerInterceptor(WrappingInterceptor):
    """Correlation, error mapping and access logging for every handler kind."""

    def __init__(self, *, propagate_trace_context: bool = False) -> None:
        super().__init__()
        self._propagate_trace_context = propagate_trace_context

    def wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        if response_streaming:
            return _wrap_streaming(method, behavior, self._propagate_trace_context)
        return _wrap_unary(method, behavior, self._propagate_trace_context)
