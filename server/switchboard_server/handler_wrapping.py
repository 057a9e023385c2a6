"""Re-wrap a ``grpc.RpcMethodHandler``'s behaviour, whatever kind of RPC it serves.

Server interceptors that need to run code around the servicer (metrics, access
logging, error mapping) subclass :class:`WrappingInterceptor` instead of each spelling
out the four handler kinds and the per-method memo.

The request deserializer is wrapped too: bytes that do not decode as the method's
request message (corrupt or truncated protobuf, invalid UTF-8 in a string field)
become an :class:`Undecodable` value instead of an exception. grpc would otherwise
answer such a request itself, before any interceptor code runs, with ``UNKNOWN`` and
the exception's text; as a value it reaches the wrapped behaviour (for a request
stream: when the servicer reads that message), which can answer it properly.
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


class Undecodable:
    """A request message that could not be deserialized, in place of the message.

    ``error`` is the deserializer's exception (for logs, never for the caller);
    ``message_type`` the full name of the expected message, when known.
    """

    __slots__ = ("error", "message_type")

    def __init__(self, error: Exception, message_type: str) -> None:
        self.error = error
        self.message_type = message_type


def _message_type(deserializer: Callable[[bytes], Any]) -> str:
    """``pkg.Message`` for a generated ``Message.FromString``; ``""`` for anything else."""
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", ""))


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, returning an :class:`Undecodable` where it would raise."""
    if deserializer is None:  # the handler takes raw bytes: nothing can fail to decode
        return None
    message_type = _message_type(deserializer)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, and whatever a custom deserializer raises
            return Undecodable(exc, message_type)

    return deserialize


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any] | None, wrap: Wrap
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """A handler of the same kind and response serializer whose behaviour is
    ``wrap(...)`` and whose request deserializer is :func:`tolerant`: the wrapped
    behaviour gets an :class:`Undecodable` for a request that does not decode."""
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
        request_deserializer=tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """A server interceptor that runs code around every handler, wrapping each method once.

    grpc.aio asks every interceptor for the handler on every call, and the handler it
    gets from below is the same object each time; re-wrapping it per call (new closures,
    a new handler tuple) is pure overhead. The wrapped handler is reused while the
    handler below is that same object; unknown methods (``None``) are never cached, so
    the memo holds at most one entry per served method. Subclasses implement ``wrap``;
    the behaviour they wrap may receive :class:`Undecodable` requests (see :func:`rewrap`).
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
