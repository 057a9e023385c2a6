"""The OpenTelemetry server interceptor, with each method's handler wrapped once.

``opentelemetry-instrumentation-grpc``'s aio server interceptor re-wraps the servicer's
handler on every call (new closures and a new handler) and builds each server span's
attributes from scratch: it splits the method name, copies the invocation metadata into
a dict to find the user agent and parses ``context.peer()`` (called three times). Per
call it then enters three generator context managers (remote context, current span,
``use_span``) and attaches two contexts (the caller's, then the span's on top).
:class:`TracingServerInterceptor` is that interceptor, with the same spans (name, kind,
attributes, remote parent, status from ``abort``/``set_code`` through the library's
context wrapper, exceptions recorded as the library records them: twice for an error
that is not a bare ``Exception``, once from its wrapper and once from ``use_span``),
that wraps a method's handler once (as :class:`~switchboard_server.handlers.WrappingInterceptor`
does), keeps each method's fixed attributes and each peer's parsed address, reads the
invocation metadata once and attaches one context (the caller's with the span in it).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import Token
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc._aio_server import (
    OpenTelemetryAioServerInterceptor,
    _OpenTelemetryAioServicerContext,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.propagate import extract
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
# the library's servicer context wrapper: abort()/set_code()/set_details() set the span status
_ServicerContext: Callable[[Any, trace.Span], Any] = _OpenTelemetryAioServicerContext
_MAX_MEMO = 1024  # distinct methods or peer addresses remembered (a few of each)


def _record(span: trace.Span, error: Exception) -> None:
    """What the library records of an error leaving the servicer: its wrapper records it
    unless it is a bare ``Exception`` (an abort is recorded through the context), then
    ``use_span`` records it again."""
    if type(error) is not Exception:
        span.record_exception(error)
    span.record_exception(error)


class _ServedSpan:
    """A started server span while the servicer runs: ``with`` it, an ``Exception``
    leaving the servicer is recorded (as the library does), then the caller's context
    is restored and the span ends, however the call ends (cancelled, closed stream)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: Token[otel_context.Context]) -> None:
        self._span, self._token = span, token

    def __enter__(self) -> trace.Span:
        return self._span

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> None:
        if isinstance(error, Exception):
            _record(self._span, error)
        otel_context.detach(self._token)
        self._span.end()


def memoised(
    memo: dict[str, Attributes], key: str, make: Callable[[str], Attributes]
) -> Attributes:
    """``make(key)``, kept in ``memo`` (which starts over when full); the value is
    shared: copy it before changing it."""
    found = memo.get(key)
    if found is None:
        if len(memo) >= _MAX_MEMO:
            memo.clear()
        found = memo[key] = make(key)
    return found


def rpc_attributes(method: str) -> Attributes:
    """The attributes the library gives a span from its method alone, client or server
    side (``/pkg.Service/Method``), in the library's order; the status code is OK
    until the call says otherwise."""
    attributes: Attributes = {
        RPC_SYSTEM: "grpc",
        RPC_GRPC_STATUS_CODE: grpc.StatusCode.OK.value[0],
    }
    if method:
        service, name = method.lstrip("/").split("/", 1)
        attributes[RPC_METHOD] = name
        attributes[RPC_SERVICE] = service
    return attributes


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
    (the memo of :class:`~switchboard_server.handlers.WrappingInterceptor`); the servicer
    gets the library's context wrapper, which sets the span's status."""

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
        begin = functools.partial(self._begin, method)
        if response_streaming:

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                with begin(context) as span:
                    async for response in behavior(request, _ServicerContext(context, span)):
                        yield response

            return streaming

        async def unary(request: Any, context: Any) -> Any:
            with begin(context) as span:
                return await behavior(request, _ServicerContext(context, span))

        return unary

    def _begin(self, method: str, context: Any) -> _ServedSpan:
        """Start the server span of a call, child of the caller's context, and make it
        current (one attach: the caller's context with the span in it)."""
        metadata = context.invocation_metadata()
        parent: otel_context.Context | None = None
        user_agent: str | None = None
        if metadata:  # the library extracts only from non-empty metadata
            headers = {md.key: md.value for md in metadata}
            parent = extract(headers)
            user_agent = headers.get("user-agent")
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=self._attributes(method, user_agent, context.peer()),
            set_status_on_exception=False,
        )
        return _ServedSpan(span, otel_context.attach(trace.set_span_in_context(span, parent)))

    def _start_span(
        self, handler_call_details: Any, context: Any, set_status_on_exception: bool = False
    ) -> Any:
        """The library's per-call path (instrumentation suppressed, a filter) uses these
        attributes too."""
        method: str = handler_call_details.method
        user_agent = dict(context.invocation_metadata() or ()).get("user-agent")
        return self._tracer.start_as_current_span(
            name=method,
            kind=trace.SpanKind.SERVER,
            attributes=self._attributes(method, user_agent, context.peer()),
            set_status_on_exception=set_status_on_exception,
        )

    def _attributes(self, method: str, user_agent: str | None, peer: str) -> Attributes:
        """A server span's attributes, in the library's order."""
        attributes = dict(memoised(self._method_attributes, method, rpc_attributes))
        if user_agent is not None:
            attributes["rpc.user_agent"] = user_agent
        attributes.update(memoised(self._peers, peer, _peer_attributes))
        return attributes
