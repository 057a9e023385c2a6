"""Server interceptor: correlation id, domain-error mapping and one access line per RPC.

For every RPC it

* takes the correlation id from ``x-correlation-id`` or ``x-request-id`` (Envoy),
  or generates one, binds it to the structlog context and returns it to the caller
  in the trailing metadata (trailing, so an error stays a trailers-only response
  that Envoy can retry on);
* turns a ``SwitchboardError`` into its canonical status with rich details, and an
  unexpected exception into INTERNAL without leaking its text;
* writes one structured access line (service, method, code, duration_ms, peer).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from switchboard_server.errors import SwitchboardError
from switchboard_server.handlers import Behavior, iterate_responses, rewrap
from switchboard_server.status import to_grpc_status

log = structlog.get_logger("switchboard.access")

CORRELATION_HEADERS = ("x-correlation-id", "x-request-id")
MAX_CORRELATION_ID = 128


def correlation_id_from(metadata: Any) -> str:
    """The caller's correlation id, or a new one; bounded and printable."""
    found = {k.lower(): v for k, v in (metadata or ()) if isinstance(v, str)}
    for header in CORRELATION_HEADERS:
        value = found.get(header, "").strip()
        if value and len(value) <= MAX_CORRELATION_ID and value.isprintable():
            return value
    return uuid.uuid4().hex


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service, method


class _Call:
    """Book-keeping for one RPC: correlation, outcome and the access line."""

    def __init__(self, full_method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.service, self.method = split_method(full_method)
        self.context = context
        self.correlation_id = correlation_id_from(context.invocation_metadata())
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
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
        log.info(
            "rpc",
            kind="server",
            service=self.service,
            method=self.method,
            code=code.name,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
            peer=self.context.peer(),
        )
        structlog.contextvars.unbind_contextvars("correlation_id")


def _wrap_unary(full_method: str, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(full_method, context)
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
    full_method: str, inner: Callable[..., Any]
) -> Callable[..., AsyncIterator[Any]]:
    async def behavior(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        call = _Call(full_method, context)
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


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Correlation, error mapping and access logging for every handler kind."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method

        def wrap(behavior: Behavior, _: bool, response_streaming: bool) -> Behavior:
            if response_streaming:
                return _wrap_streaming(method, behavior)
            return _wrap_unary(method, behavior)

        return rewrap(await continuation(handler_call_details), wrap)  # type: ignore[return-value]
