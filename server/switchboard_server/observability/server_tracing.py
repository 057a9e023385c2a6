"""The OpenTelemetry server interceptor, with each method's handler wrapped once.

``opentelemetry-instrumentation-grpc``'s aio server interceptor re-wraps the servicer's
handler on every call (new closures and a new handler) and builds each server span's
attributes from scratch: it splits the method name, copies the invocation metadata into
a dict to find the user agent and parses ``context.peer()`` (called three times).
:class:`TracingServerInterceptor` is that interceptor, with the same spans (name, kind,
attributes, remote parent, status from ``abort``/``set_code``, exceptions recorded),
that wraps a method's handler once (as :class:`~switchboard_server.handlers.WrappingInterceptor`
does) and keeps each method's fixed attributes and each peer's parsed address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc._aio_server import OpenTelemetryAioServerInterceptor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.semconv._incubating.attributes.net_attributes import (
    NET_PEER_IP,
    NET_PEER_NAME,
    NET_PEER_PORT,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_GRPC_STATUS_CODE,
    RPC_METHOD,
    RPC_SERVICE,
    RPC_SYSTEM,
)
from opentelemetry.util.types import AttributeValue

from switchboard_server.handlers import Behavior, WrappingInterceptor

Attributes = dict[str, AttributeValue]
_MAX_PEERS = 1024  # distinct peer addresses remembered (sidecar connections, a few)


class _Method:
    """What the library's per-call code reads of ``HandlerCallDetails``: the method."""

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method = method


def _peer_attributes(peer: str) -> Attributes:
    """``net.peer.*`` from ``ipv4:127.0.0.1:57284`` / ``ipv6:[::1]:57284``, as the
    library derives them (nothing for a unix socket or an address it cannot split)."""
    if peer.startswith("unix:"):
        return {}
    try:
        ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
    except (IndexError, ValueError):
        return {}
    ip = unquote(ip)
    attributes: Attributes = {NET_PEER_IP: ip, NET_PEER_PORT: port}
    if ip in ("[::1]", "127.0.0.1"):
        attributes[NET_PEER_NAME] = "localhost"
    return attributes


class TracingServerInterceptor(WrappingInterceptor, OpenTelemetryAioServerInterceptor):  # type: ignore[misc]
    """OpenTelemetry server spans for every RPC, the handler of each method wrapped once
    (the memo of :class:`~switchboard_server.handlers.WrappingInterceptor`) by the
    library's own per-kind wrappers."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        # the library's tracer (scope name, version, schema URL) for this provider
        library: OpenTelemetryAioServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=tracer_provider
        )
        WrappingInterceptor.__init__(self)
        OpenTelemetryAioServerInterceptor.__init__(self, library._tracer)  # type: ignore[no-untyped-call]
        self._method_attributes: dict[str, Attributes] = {}
        self._peers: dict[str, Attributes] = {}

    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        if not is_instrumentation_enabled() or self._filter is not None:
            return await OpenTelemetryAioServerInterceptor.intercept_service(  # type: ignore[no-untyped-call]
                self, continuation, handler_call_details
            )
        return await WrappingInterceptor.intercept_service(self, continuation, handler_call_details)

    def wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        details = _Method(method)
        if response_streaming:
            return self._intercept_aio_server_stream(behavior, details)  # type: ignore[no-untyped-call,no-any-return]
        return self._intercept_aio_server_unary(behavior, details)  # type: ignore[no-untyped-call,no-any-return]

    def _start_span(
        self, handler_call_details: Any, context: Any, set_status_on_exception: bool = False
    ) -> Any:
        method: str = handler_call_details.method
        attributes = dict(self._fixed_attributes(method))
        for key, value in context.invocation_metadata() or ():
            if key == "user-agent":
                attributes["rpc.user_agent"] = value
        attributes.update(self._peer(context.peer()))
        return self._tracer.start_as_current_span(
            name=method,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            set_status_on_exception=set_status_on_exception,
        )

    def _fixed_attributes(self, method: str) -> Attributes:
        found = self._method_attributes.get(method)
        if found is None:
            found = {RPC_SYSTEM: "grpc", RPC_GRPC_STATUS_CODE: grpc.StatusCode.OK.value[0]}
            if method:
                service, name = method.lstrip("/").split("/", 1)
                found[RPC_METHOD] = name
                found[RPC_SERVICE] = service
            self._method_attributes[method] = found
        return found

    def _peer(self, peer: str) -> Attributes:
        found = self._peers.get(peer)
        if found is None:
            if len(self._peers) >= _MAX_PEERS:
                self._peers.clear()
            found = self._peers[peer] = _peer_attributes(peer)
        return found
