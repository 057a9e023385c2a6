"""Server spans as ``opentelemetry-instrumentation-grpc``'s aio interceptor makes them,
started and ended by our one server interceptor (:mod:`switchboard_server.interceptors`).

The library's interceptor is a layer of its own: per call it re-wraps the servicer's
handler, builds the span's attributes from scratch (splits the method name, copies the
metadata to find the user agent, parses ``context.peer()`` three times), enters three
generator context managers, attaches two contexts, and hands the servicer a ``wrapt``
proxy of its context so that ``abort``/``set_code``/``set_details`` set the span's
status. Every attribute access through that proxy costs, and our interceptor reads the
context on every call. :class:`ServerSpans` makes the same spans (name, kind, scope,
attributes, remote parent, status, recorded exceptions) from what our interceptor
already has: the text headers read once, the peer, and at the end the call's final
code, details and how it ended. A span's attributes are built once per method, user
agent and peer (a connection) and reused; one context is attached (the caller's with
the span in it).
"""

from __future__ import annotations

from contextvars import Token
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc._utilities import _server_status
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.propagate import extract
from opentelemetry.semconv._incubating.attributes.net_attributes import (
    NET_PEER_IP,
    NET_PEER_NAME,
    NET_PEER_PORT,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_GRPC_STATUS_CODE

from switchboard_server.observability.rpc_spans import Attributes, memoised, rpc_attributes


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


class ServedSpan:
    """The server span of one call, current (attached) until :meth:`end`."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: Token[otel_context.Context]) -> None:
        self._span, self._token = span, token

    def end(self, code: grpc.StatusCode | None, details: str, error: BaseException | None) -> None:
        """Settle the span as the library's context wrapper and ``use_span`` would, then
        restore the caller's context and end it.

        ``code`` and ``details`` are what the call set (``context.code()``/``details()``,
        ``None`` if nothing did); ``error`` is what left the servicer. The library's
        wrapper sets the status code attribute and the status when the servicer aborts
        (with its details as given) or sets a code (details, else the code's own text);
        it records an ``Exception`` unless it is a bare ``Exception`` (an abort is
        recorded through the context), then ``use_span`` records it again."""
        span = self._span
        if code is not None and code is not grpc.StatusCode.OK:
            span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
            aborted = isinstance(error, grpc.aio.AbortError)
            details = details if aborted else details or code.value[1]
            span.set_status(_server_status(code, details))  # type: ignore[no-untyped-call]
        if isinstance(error, Exception):
            if type(error) is not Exception:
                span.record_exception(error)
            span.record_exception(error)
        otel_context.detach(self._token)
        span.end()


class ServerSpans:
    """Starts server spans with the library's tracer (scope name, version, schema URL)."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        library = aio_server_interceptor(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
        self._tracer: trace.Tracer = library._tracer
        # (method, user agent, peer) -> the span's attributes; a peer is a connection,
        # long-lived behind Envoy, so calls reuse them (the SDK copies them into the span)
        self._attributes_of: dict[tuple[str, str | None, str], Attributes] = {}

    def start(self, method: str, headers: dict[str, str], peer: str) -> ServedSpan | None:
        """The span of a call to ``method`` (``/pkg.Service/Method``), child of the
        caller's W3C context in ``headers`` and current until it ends; None while
        instrumentation is suppressed (the library then makes no span either)."""
        if not is_instrumentation_enabled():
            return None
        parent = extract(headers) if headers else None  # the library: only from metadata
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=memoised(
                self._attributes_of, (method, headers.get("user-agent"), peer), _attributes
            ),
            set_status_on_exception=False,
        )
        return ServedSpan(span, otel_context.attach(trace.set_span_in_context(span, parent)))


def _attributes(key: tuple[str, str | None, str]) -> Attributes:
    """A server span's attributes, in the library's order."""
    method, user_agent, peer = key
    attributes = rpc_attributes(method)
    if user_agent is not None:
        attributes["rpc.user_agent"] = user_agent
    attributes.update(_peer_attributes(peer))
    return attributes
