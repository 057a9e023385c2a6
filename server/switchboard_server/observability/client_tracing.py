"""Traced outbound calls: ``opentelemetry-instrumentation-grpc``'s aio client
interceptors outside our telemetry ones (:mod:`.client`).

The library's interceptor of each call kind starts the client span, makes it current
and injects the W3C ``traceparent`` (and the sampled flag) into the call's metadata;
ours, inside it, meter the call and write its access line with that span current, so
the line carries the client span's ids.

One upstream gap is closed here, through the public API: around a unary-response call
the library handles an ``AioRpcError`` but not a cancellation (upstream:
open-telemetry/opentelemetry-python-contrib#3271), so a call cancelled before it has a
status (a caller's timeout, a task group torn down) leaves its span open, never
exported. Our interceptor sees the cancellation with that span current and ends it as
failed (:func:`end_cancelled_span`); a unit test says when the library no longer needs it.
"""

from __future__ import annotations

import asyncio

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_GRPC_STATUS_CODE
from opentelemetry.trace import Status, StatusCode

from switchboard_server.observability.client import ClientTelemetry, telemetry_interceptors
from switchboard_server.observability.metrics import GrpcMetrics


def end_cancelled_span(cancelled: asyncio.CancelledError) -> None:
    """End the current client span of a call that was cancelled before it had a status.

    Only for calls through :func:`traced_client_interceptors`: with instrumentation on,
    the current span there is the CLIENT span the library started for this call (with
    it suppressed, the library starts none and the current span is the caller's, so it
    is left alone). Ending a span twice only logs a warning, should the library one day
    end it too.
    """
    if not is_instrumentation_enabled():
        return
    span = trace.get_current_span()
    if not (isinstance(span, ReadableSpan) and span.kind is trace.SpanKind.CLIENT):
        return  # not sampled (a non-recording span), or not a client span after all
    if not span.is_recording():
        return
    span.set_attribute(RPC_GRPC_STATUS_CODE, grpc.StatusCode.CANCELLED.value[0])
    span.set_status(Status(StatusCode.ERROR, f"{type(cancelled).__name__}: {cancelled}"))
    span.record_exception(cancelled)
    span.end()


def traced_client_interceptors(
    tracer_provider: trace.TracerProvider,
    metrics: GrpcMetrics,
    *,
    target: str = "",
    access_log: bool = True,
) -> list[grpc.aio.ClientInterceptor]:
    """The library's client interceptors for ``tracer_provider``, then ours: metrics,
    correlation id and access line (see :class:`~.client.ClientTelemetry`), ending the
    span of a cancelled call."""
    library: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider
    )
    telemetry = ClientTelemetry(
        metrics, target=target, access_log=access_log, on_cancelled=end_cancelled_span
    )
    return [*library, *telemetry_interceptors(telemetry)]
