"""gRPC servicer of switchboard.context.v1.ContextService: translation only."""

from __future__ import annotations

from typing import Any

import grpc

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.config import Settings
from switchboard_server.context import translate
from switchboard_server.context.domain import ContextService
from switchboard_server.errors import ErrorReason, Unavailable
from switchboard_server.request_keys import header_request_id, request_key
from switchboard_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]


class ContextServicer(pb_grpc.ContextServiceServicer):
    """Validates requests, calls the domain service, builds responses."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._service: ContextService | None = None

    def attach(self, service: ContextService | None) -> None:
        """Hand over the ready domain service (None while starting or stopped)."""
        self._service = service

    @property
    def service(self) -> ContextService:
        if self._service is None:
            raise Unavailable("context service is not ready", reason=ErrorReason.NOT_READY)
        return self._service

    async def GetContext(
        self, request: pb.GetContextRequest, context: Ctx
    ) -> pb.GetContextResponse:
        v = Violations()
        query = translate.context_query(v, request, self._settings)
        v.raise_if_any()
        return translate.context_response(await self.service.get_context(query))

    async def AppendMemory(
        self, request: pb.AppendMemoryRequest, context: Ctx
    ) -> pb.AppendMemoryResponse:
        v = Violations()
        session_id = v.session_id("session_id", request.session_id)
        entries = translate.new_memories(v, request, self._settings)
        key = request_key(v, request, request.request_id, header_request_id(context))
        v.raise_if_any()
        result = await self.service.append_memory(session_id, entries, key=key)
        return pb.AppendMemoryResponse(
            entry_ids=result.entry_ids,
            memory_stats=translate.stats_message(self.service.stats_of(result)),
            evicted_count=sum(result.evicted.values()),
        )

    async def ClearMemory(
        self, request: pb.ClearMemoryRequest, context: Ctx
    ) -> pb.ClearMemoryResponse:
        v = Violations()
        session_id = v.session_id("session_id", request.session_id)
        types = translate.memory_types(v, "memory_types", request.memory_types)
        key = request_key(v, request, request.request_id, header_request_id(context))
        v.raise_if_any()
        return pb.ClearMemoryResponse(
            deleted_count=await self.service.clear_memory(session_id, types, key=key)
        )

    async def GetMemoryStats(
        self, request: pb.GetMemoryStatsRequest, context: Ctx
    ) -> pb.GetMemoryStatsResponse:
        v = Violations()
        session_id = v.session_id("session_id", request.session_id)
        v.raise_if_any()
        stats = await self.service.memory_stats(session_id)
        return pb.GetMemoryStatsResponse(memory_stats=translate.stats_message(stats))

    async def IngestDocuments(
        self, request: pb.IngestDocumentsRequest, context: Ctx
    ) -> pb.IngestDocumentsResponse:
        v = Violations()
        documents = translate.documents(v, request, self._settings)
        key = request_key(v, request, request.request_id, header_request_id(context))
        v.raise_if_any()
        result = await self.service.ingest(documents, key=key)
        return pb.IngestDocumentsResponse(
            document_count=result.document_count,
            passage_count=result.passage_count,
            replaced_count=result.replaced_count,
        )

    async def DeleteDocuments(
        self, request: pb.DeleteDocumentsRequest, context: Ctx
    ) -> pb.DeleteDocumentsResponse:
        v = Violations()
        ids = translate.document_ids(v, request, self._settings)
        key = request_key(v, request, request.request_id, header_request_id(context))
        v.raise_if_any()
        result = await self.service.delete_documents(ids, key=key)
        return pb.DeleteDocumentsResponse(
            deleted_count=result.deleted_count, missing_ids=result.missing_ids
        )

    async def WarmupCache(
        self, request: pb.WarmupCacheRequest, context: Ctx
    ) -> pb.WarmupCacheResponse:
        v = Violations()
        v.count("queries", len(request.queries), 1, self._settings.core.max_batch_items)
        queries = [
            translate.context_query(v, q, self._settings, prefix=f"queries[{i}].")
            for i, q in enumerate(request.queries)
        ]
        v.raise_if_any()
        return pb.WarmupCacheResponse(warmed_count=await self.service.warmup(queries))

    async def GetKnowledgeStats(
        self, request: pb.GetKnowledgeStatsRequest, context: Ctx
    ) -> pb.GetKnowledgeStatsResponse:
        return translate.knowledge_stats_response(await self.service.knowledge_stats())

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: Ctx
    ) -> pb.ListDocumentsResponse:
        v = Violations()
        prefix, after, size = translate.list_documents(v, request)
        v.raise_if_any()
        ids = await self.service.list_document_ids(prefix, after, size)
        return translate.list_response(ids, size)
