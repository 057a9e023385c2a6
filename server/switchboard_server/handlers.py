"""Re-wrap a ``grpc.RpcMethodHandler``'s behaviour, whatever kind of RPC it serves.

Server interceptors that need to run code around the servicer (metrics, access
logging, error mapping) share this instead of each spelling out the four handler kinds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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


async def iterate_responses(result: Any) -> AsyncIterator[Any]:
    """The responses of a streaming behaviour: an async iterator, or a coroutine that
    writes with ``context.write()`` (e.g. ``grpc.health.v1`` Watch) and yields nothing."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result
