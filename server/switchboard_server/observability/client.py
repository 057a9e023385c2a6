"""Client interceptors for outbound ``grpc.aio`` calls: correlation, metrics, access line.

For every outbound RPC they

* forward the correlation id bound in the structlog context (``x-correlation-id``;
  a new one is generated and used for this call if none is bound);
* count it in ``grpc_client_*`` (see :mod:`.metrics`);
* write one access line ``event="rpc", kind="client"`` with service, method, code,
  duration_ms, peer (the channel target), trace_id, span_id and correlation_id;
* with ``propagate_trace_context`` (tracing off, no OpenTelemetry client interceptor),
  forward the current W3C trace context (the caller's ``traceparent``) themselves.

grpc.aio files each interceptor object under exactly one call kind, hence one small
class per kind sharing :class:`ClientTelemetry`. With tracing on, they sit inside the
OpenTelemetry client interceptors (:mod:`.client_tracing`), so the client span is
current for the access line.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import structlog
from opentelemetry import propagate

from switchboard_server.observability.metrics import (
    GrpcMetrics,
    GrpcType,
    RpcMeter,
    status_code_of,
)

log = structlog.get_logger("switchboard.access")

CORRELATION_HEADER = "x-correlation-id"


def _with_headers(
    details: grpc.aio.ClientCallDetails, correlation_id: str, *, trace_context: bool
) -> Any:
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    if CORRELATION_HEADER not in metadata:
        metadata.add(CORRELATION_HEADER, correlation_id)
    if trace_context:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        for key, value in carrier.items():
            if key not in metadata:
                metadata.add(key, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


@dataclass
class _Outbound:
    """One outbound RPC: its meter and the fields of its access line."""

    telemetry: ClientTelemetry
    meter: RpcMeter
    fields: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)

    @property
    def correlation_id(self) -> str:
        return str(self.fields["correlation_id"])

    def finish(self, code: grpc.StatusCode, *, response_received: bool = False) -> None:
        if response_received and code is grpc.StatusCode.OK:
            self.meter.received()
        self.meter.done(code)
        if self.telemetry.access_log and log.is_enabled_for(logging.INFO):
            log.info(
                "rpc",
                kind="client",
                code=code.name,
                duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
                **self.fields,
            )


class ClientTelemetry:
    """Shared state of the per-kind client interceptors of one channel."""

    def __init__(
        self,
        metrics: GrpcMetrics,
        *,
        target: str = "",
        access_log: bool = True,
        propagate_trace_context: bool = False,
        on_cancelled: Callable[[asyncio.CancelledError], None] | None = None,
    ):
        self.metrics = metrics
        self.target = target
        self.access_log = access_log
        self.propagate_trace_context = propagate_trace_context
        self.on_cancelled = on_cancelled  # called with the current context of the call
        self._pending: set[asyncio.Task[None]] = set()

    def _cancelled(self, outbound: _Outbound, cancelled: asyncio.CancelledError) -> None:
        outbound.finish(grpc.StatusCode.CANCELLED)
        if self.on_cancelled is not None:
            self.on_cancelled(cancelled)

    def outbound(self, grpc_type: GrpcType, method: str | bytes) -> _Outbound:
        """Start metering one call of ``method``; its correlation id is the bound one
        (or a new one)."""
        bound = structlog.contextvars.get_contextvars().get("correlation_id")
        correlation_id = bound if isinstance(bound, str) and bound else secrets.token_hex(16)
        series = self.metrics.series(grpc_type, method)  # method names parsed once
        # trace_id/span_id come from the current (client) span when the line is written
        fields: dict[str, Any] = {
            "service": series.service,
            "method": series.method,
            "peer": self.target,
            "correlation_id": correlation_id,
        }
        return _Outbound(self, RpcMeter(series), fields)

    def begin(
        self, grpc_type: GrpcType, details: grpc.aio.ClientCallDetails
    ) -> tuple[_Outbound, Any]:
        """Start metering; returns the book-keeping and details carrying the correlation id."""
        outbound = self.outbound(grpc_type, details.method)
        headers = _with_headers(
            details, outbound.correlation_id, trace_context=self.propagate_trace_context
        )
        return outbound, headers

    async def settle(self, outbound: _Outbound, call: Any, *, unary_response: bool) -> None:
        """Wait for the call to end and record its outcome."""
        try:
            code = status_code_of(await call.code()) or grpc.StatusCode.UNKNOWN
        except asyncio.CancelledError as cancelled:
            if unary_response:  # the caller's own await; a stream's settle task is ours
                self._cancelled(outbound, cancelled)
            else:
                outbound.finish(grpc.StatusCode.CANCELLED)
            raise
        except grpc.RpcError as exc:
            code = status_code_of(exc.code()) or grpc.StatusCode.UNKNOWN
        outbound.finish(code, response_received=unary_response)

    def settle_later(self, outbound: _Outbound, call: Any) -> None:
        """Record a streaming call's outcome when it ends, without blocking the caller."""
        task = asyncio.ensure_future(self.settle(outbound, call, unary_response=False))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def start(
        self,
        grpc_type: GrpcType,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> tuple[_Outbound, Any]:
        outbound, details = self.begin(grpc_type, details)
        if grpc_type in ("unary", "server_stream"):
            outbound.meter.sent()
        try:
            call = await continuation(details, request)
        except grpc.RpcError as exc:
            outbound.finish(status_code_of(exc.code()) or grpc.StatusCode.UNKNOWN)
            raise
        except asyncio.CancelledError as cancelled:
            self._cancelled(outbound, cancelled)
            raise
        return outbound, call


class UnaryUnaryTelemetry(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, telemetry: ClientTelemetry) -> None:
        self._t = telemetry

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        outbound, call = await self._t.start("unary", continuation, client_call_details, request)
        await self._t.settle(outbound, call, unary_response=True)
        return call


class StreamUnaryTelemetry(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, telemetry: ClientTelemetry) -> None:
        self._t = telemetry

    async def intercept_stream_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Iterable[Any] | AsyncIterable[Any],
    ) -> Any:
        outbound, call = await self._t.start(
            "client_stream", continuation, client_call_details, request_iterator
        )
        await self._t.settle(outbound, call, unary_response=True)
        return call


class UnaryStreamTelemetry(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, telemetry: ClientTelemetry) -> None:
        self._t = telemetry

    async def intercept_unary_stream(  # type: ignore[override]
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        outbound, call = await self._t.start(
            "server_stream", continuation, client_call_details, request
        )
        self._t.settle_later(outbound, call)
        return call


class StreamStreamTelemetry(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, telemetry: ClientTelemetry) -> None:
        self._t = telemetry

    async def intercept_stream_stream(  # type: ignore[override]
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Iterable[Any] | AsyncIterable[Any],
    ) -> Any:
        outbound, call = await self._t.start(
            "bidi_stream", continuation, client_call_details, request_iterator
        )
        self._t.settle_later(outbound, call)
        return call


def telemetry_interceptors(telemetry: ClientTelemetry) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per call kind, all sharing ``telemetry``."""
    kinds = [
        UnaryUnaryTelemetry(telemetry),
        UnaryStreamTelemetry(telemetry),
        StreamUnaryTelemetry(telemetry),
        StreamStreamTelemetry(telemetry),
    ]
    return cast(list[grpc.aio.ClientInterceptor], kinds)
