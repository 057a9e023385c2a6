"""Re-wrap a ``grpc.RpcMethodHandler``'s behaviour, whatever kind of RPC it serves.

Server interceptors that need to run code around the servicer (metrics, access
logging, error mapping) subclass :class:`WrappingInterceptor` instead of each spelling
out the four handler kinds and the per-method memo.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[..., Any]
# wrap(behavior, request_streaming, response_streaming) -> new behavior
Wrap = Callable[[Behavior, bool, bool], Behavior]

_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any] | None, wrap: Wrap
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """A handler of the same kind and serializers whose behaviour is ``wrap(...)``."""
    if handler is None:
        return None
    behavior: Behavior | None = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    if behavior is None:
        return handler
    kind = (handler.request_streaming, handler.response_streaming)
    return _FACTORIES[kind](
        wrap(behavior, *kind),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """A server interceptor that runs code around every handler, wrapping each method once.

    grpc.aio asks every interceptor for the handler on every call, and the handler it
    gets from below is the same object each time; re-wrapping it per call (new closures,
    a new handler tuple) is pure overhead. The wrapped handler is reused while the
    handler below is that same object; unknown methods (``None``) are never cached, so
    the memo holds at most one entry per served method. Subclasses implement ``wrap``.
    """

    def __init__(self) -> None:
        self._by_method: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any] | None]
        ] = {}

    @abc.abstractmethod
    def wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        """The behaviour that runs ``behavior`` of ``method`` (a '/pkg.Service/Method')."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        # None (an unknown method) goes back as is: grpc answers UNIMPLEMENTED
        return self._wrapped(handler_call_details.method, handler)  # type: ignore[return-value]

    def _wrapped(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler is None:
            return None
        cached = self._by_method.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = rewrap(handler, functools.partial(self.wrap, method))
        self._by_method[method] = (handler, wrapped)
        return wrapped


async def iterate_responses(result: Any) -> AsyncIterator[Any]:
    """The responses of a streaming behaviour: an async iterator, or a coroutine that
    writes with ``context.write()`` (e.g. ``grpc.health.v1`` Watch) and yields nothing."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result
