"""gRPC adapters for the peers: classification and context over ``grpc.aio`` stubs.

In the mesh the targets are the local sidecar's egress listener; in tests without
Envoy they are the services themselves. Every call carries the deadline the pipeline
computed; the turn's ``x-correlation-id``, trace context, client metrics and the
client access line come from the interceptors of ``Runtime.client_interceptors``.
The adapters take the stub, so the same code drives in-process servicers
(:mod:`.in_process`) with the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_client import REQUEST_ID_HEADER
from switchboard_server.orchestration.ports import DependencyFailed
from switchboard_server.orchestration.values import (
    Alternative,
    Intent,
    MemoryEntry,
    Retrieved,
    Source,
    SourceKind,
)
from switchboard_server.rollout_headers import BUCKET_HEADER, session_bucket

_MEMORY_TYPES = {
    "working": ctx_pb.MEMORY_TYPE_WORKING,
    "episodic": ctx_pb.MEMORY_TYPE_EPISODIC,
    "semantic": ctx_pb.MEMORY_TYPE_SEMANTIC,
}


def _failed(exc: grpc.aio.AioRpcError) -> DependencyFailed:
    return DependencyFailed(exc.code().name)


def intent_from_proto(c: cls_pb.Classification) -> Intent:
    return Intent(
        intent=c.intent,
        confidence=c.confidence,
        out_of_scope=c.out_of_scope,
        l1=c.hierarchy.l1 or c.intent.split("/")[0],
        alternatives=tuple(Alternative(a.intent, a.confidence) for a in c.alternatives),
    )


def source_from_proto(s: ctx_pb.Source) -> Source:
    kind = SourceKind.KNOWLEDGE if s.kind == ctx_pb.SOURCE_KIND_KNOWLEDGE else SourceKind.MEMORY
    return Source(
        kind=kind,
        id=s.id,
        content=s.content,
        relevance=s.relevance,
        title=s.title,
        metadata=dict(s.metadata),
    )


class GrpcClassifier:
    """:class:`~switchboard_server.orchestration.ports.Classifier` over gRPC."""

    def __init__(self, stub: cls_grpc.ClassificationServiceAsyncStub) -> None:
        self._stub = stub

    async def classify(
        self, text: str, session_id: str, *, threshold: float | None, top_k: int, budget_s: float
    ) -> Intent:
        options = cls_pb.ClassifyOptions(top_k=top_k)
        if threshold is not None:
            options.confidence_threshold = threshold
        request = cls_pb.ClassifyRequest(text=text, session_id=session_id, options=options)
        # The session's bucket keeps a conversation on one model variant (a canary split
        # at our sidecar, mesh/rollout/variants.py).
        metadata = ((BUCKET_HEADER, str(session_bucket(session_id))),) if session_id else ()
        try:
            response = await self._stub.Classify(request, timeout=budget_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from exc
        return intent_from_proto(response.classification)


class GrpcContext:
    """:class:`~switchboard_server.orchestration.ports.ContextPort` over gRPC."""

    def __init__(self, stub: ctx_grpc.ContextServiceAsyncStub) -> None:
        self._stub = stub

    async def get_context(
        self, query: str, session_id: str, *, max_results: int, max_chars: int, budget_s: float
    ) -> Retrieved:
        request = ctx_pb.GetContextRequest(
            query=query,
            session_id=session_id,
            max_results=max_results,
            include_knowledge_base=True,
            max_context_chars=max_chars,
        )
        try:
            response = await self._stub.GetContext(request, timeout=budget_s)
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from exc
        return Retrieved(tuple(source_from_proto(s) for s in response.sources), response.context)

    async def append_memory(
        self,
        session_id: str,
        entries: Sequence[MemoryEntry],
        *,
        budget_s: float,
        request_id: str = "",
    ) -> None:
        request = ctx_pb.AppendMemoryRequest(
            session_id=session_id,
            request_id=request_id,
            entries=[
                ctx_pb.MemoryEntry(
                    type=_MEMORY_TYPES[e.kind], content=e.content, metadata=e.metadata
                )
                for e in entries
            ],
        )
        try:
            # The key also as a header: the mesh resends a keyed write (context dedups it).
            metadata = ((REQUEST_ID_HEADER, request_id),) if request_id else ()
            await self._stub.AppendMemory(request, timeout=budget_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise _failed(exc) from exc


class Peers:
    """Owns the channels to classification and context."""

    def __init__(
        self,
        classification_target: str,
        context_target: str,
        *,
        interceptors_for: Callable[[str], Sequence[grpc.aio.ClientInterceptor]] = lambda _: (),
        max_message_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._channels = [
            grpc.aio.insecure_channel(
                target, options=options, interceptors=list(interceptors_for(target))
            )
            for target in (classification_target, context_target)
        ]
        self.classifier = GrpcClassifier(cls_grpc.ClassificationServiceStub(self._channels[0]))
        self.context = GrpcContext(ctx_grpc.ContextServiceStub(self._channels[1]))

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
