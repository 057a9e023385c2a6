"""Peers in this process: the classification and context servicers called directly.

With ``SWITCHBOARD_ORCHESTRATION_PEERS=in_process`` one server serves all three
services (the single-process deployment) and the chat pipeline calls the other two
servicers as plain coroutines: the same request messages, validation, translation
and domain code as over gRPC (the adapters of :mod:`.peers` drive them), without the
transport, the interceptors or a network hop. What the transport did for a call is
done here: its deadline (``asyncio.timeout``) and the status of a failure, raised as
:class:`DependencyFailed` named after the canonical code the error has on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import structlog

from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_server.errors import SwitchboardError
from switchboard_server.orchestration.peers import GrpcClassifier, GrpcContext
from switchboard_server.orchestration.ports import DEADLINE_EXCEEDED, DependencyFailed
from switchboard_server.rpc_errors import to_grpc_status

log = structlog.get_logger(__name__)


class CallMetadata:
    """The one part of a ``ServicerContext`` the servicers read for the unary methods
    the pipeline calls: the call's metadata (e.g. a write's request_id header)."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class InProcessStub:
    """A servicer shaped like a ``grpc.aio`` stub: ``await stub.Method(request, timeout=t)``.

    The servicer gets a :class:`CallMetadata` for its ``ServicerContext``: servicers
    here translate messages and read only the call's metadata from it.
    """

    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._servicer, name)

        async def call(
            request: Any,
            *,
            timeout: float | None = None,  # noqa: ASYNC109 - the stub call's keyword
            metadata: Sequence[tuple[str, str]] = (),
        ) -> Any:
            try:
                async with asyncio.timeout(timeout):
                    return await method(request, CallMetadata(metadata))
            except TimeoutError:
                raise DependencyFailed(DEADLINE_EXCEEDED) from None
            except SwitchboardError as exc:
                raise DependencyFailed(to_grpc_status(exc).code.name) from exc
            except Exception as exc:  # over the wire: INTERNAL
                log.error("in_process.unhandled_exception", method=name, exc_info=exc)
                raise DependencyFailed("INTERNAL") from exc

        return call


def in_process_classifier(servicer: object) -> GrpcClassifier:
    return GrpcClassifier(cast("cls_grpc.ClassificationServiceAsyncStub", InProcessStub(servicer)))


def in_process_context(servicer: object) -> GrpcContext:
    return GrpcContext(cast("ctx_grpc.ContextServiceAsyncStub", InProcessStub(servicer)))
