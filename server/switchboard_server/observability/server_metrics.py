"""Server interceptor feeding :class:`GrpcMetrics` (``grpc_server_*``).

Place it inside the OpenTelemetry interceptor (so latency exemplars carry the server
span's trace id) and outside the error-mapping interceptor (so it sees the final
status code, e.g. INVALID_ARGUMENT from a domain ``InvalidArgument``)::

    grpc.aio.server(interceptors=[otel, MetricsServerInterceptor(m), ServerInterceptor()])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from switchboard_server.handlers import Behavior, WrappingInterceptor, iterate_responses
from switchboard_server.observability.metrics import (
    GrpcMetrics,
    MethodSeries,
    RpcMeter,
    grpc_type_of,
    status_code_of,
)


def _final_code(
    context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None
) -> grpc.StatusCode:
    code = status_code_of(context.code())
    if code is not None:
        return code
    if exc is None:
        return grpc.StatusCode.OK
    if isinstance(exc, Exception):  # incl. grpc.aio.AbortError without a code
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.CANCELLED  # asyncio.CancelledError and friends


async def _counted(requests: AsyncIterator[Any], meter: RpcMeter) -> AsyncIterator[Any]:
    async for request in requests:
        meter.received()
        yield request


def _wrap(
    series: MethodSeries,
    inner: Callable[..., Any],
    *,
    request_streaming: bool,
    response_streaming: bool,
) -> Callable[..., Any]:
    def begin(request: Any) -> tuple[RpcMeter, Any]:
        meter = RpcMeter(series)
        if request_streaming:
            return meter, _counted(request, meter)
        meter.received()
        return meter, request

    if response_streaming:

        async def streaming(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            meter, request = begin(request)
            error: BaseException | None = None
            try:
                async for item in iterate_responses(inner(request, context)):
                    meter.sent()
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                meter.done(_final_code(context, error))

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        meter, request = begin(request)
        error: BaseException | None = None
        try:
            response = await inner(request, context)
            meter.sent()
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.done(_final_code(context, error))

    return unary


class MetricsServerInterceptor(WrappingInterceptor):
    """Counts started/handled RPCs, messages and latency for every handler kind."""

    def __init__(self, metrics: GrpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        return _wrap(
            self._metrics.series(grpc_type_of(request_streaming, response_streaming), method),
            behavior,
            request_streaming=request_streaming,
            response_streaming=response_streaming,
        )
