"""ContextClient: retrieve context, write memory, manage the knowledge base."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_client._base import BaseClient, request_id_or_new


class ContextClient(BaseClient):
    """Typed async client of ``switchboard.context.v1.ContextService``."""

    _stub: pb_grpc.ContextServiceStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.ContextServiceStub(channel)

    async def get_context(
        self,
        query: str,
        *,
        session_id: str = "",
        max_results: int = 0,
        include_knowledge_base: bool = True,
        max_context_chars: int = 0,
        timeout_s: float | None = None,
    ) -> pb.GetContextResponse:
        """Ranked memory and knowledge for ``query``."""
        self.channel  # noqa: B018
        request = pb.GetContextRequest(
            query=query,
            session_id=session_id,
            max_results=max_results,
            include_knowledge_base=include_knowledge_base,
            max_context_chars=max_context_chars,
        )
        return await self._unary(self._stub.GetContext, request, **self._options(timeout_s, None))

    async def append_memory(
        self,
        session_id: str,
        entries: Iterable[pb.MemoryEntry],
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> pb.AppendMemoryResponse:
        """Append entries to a session's memory; durable when this returns.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018
        request = pb.AppendMemoryRequest(
            session_id=session_id,
            entries=list(entries),
            request_id=request_id_or_new(request_id),
        )
        return await self._unary(
            self._stub.AppendMemory, request, **self._options(timeout_s, None, request.request_id)
        )

    async def get_memory_stats(
        self, session_id: str, *, timeout_s: float | None = None
    ) -> pb.MemoryStats:
        self.channel  # noqa: B018
        request = pb.GetMemoryStatsRequest(session_id=session_id)
        response = await self._unary(
            self._stub.GetMemoryStats, request, **self._options(timeout_s, None)
        )
        return response.memory_stats

    async def clear_memory(
        self, session_id: str, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> int:
        """Clear every memory type of a session; returns the number of entries removed.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018
        request = pb.ClearMemoryRequest(
            session_id=session_id, request_id=request_id_or_new(request_id)
        )
        response = await self._unary(
            self._stub.ClearMemory, request, **self._options(timeout_s, None, request.request_id)
        )
        return response.deleted_count

    async def ingest_documents(
        self,
        documents: Iterable[tuple[str, str, str] | pb.Document],
        *,
        metadata: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> pb.IngestDocumentsResponse:
        """Add or replace documents, given as ``(id, title, text)`` or ``Document``.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018
        docs = [
            d
            if isinstance(d, pb.Document)
            else pb.Document(id=d[0], title=d[1], text=d[2], metadata=dict(metadata or {}))
            for d in documents
        ]
        request = pb.IngestDocumentsRequest(
            documents=docs, request_id=request_id_or_new(request_id)
        )
        return await self._unary(
            self._stub.IngestDocuments,
            request,
            **self._options(timeout_s, None, request.request_id),
        )

    async def delete_documents(
        self,
        document_ids: Iterable[str],
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> pb.DeleteDocumentsResponse:
        """Remove documents of the knowledge base; ``missing_ids`` names those not found.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018
        request = pb.DeleteDocumentsRequest(
            document_ids=list(document_ids), request_id=request_id_or_new(request_id)
        )
        return await self._unary(
            self._stub.DeleteDocuments,
            request,
            **self._options(timeout_s, None, request.request_id),
        )

    async def get_knowledge_stats(
        self, *, timeout_s: float | None = None
    ) -> pb.GetKnowledgeStatsResponse:
        """Counts, bytes on disk and last ingest time of the knowledge base."""
        self.channel  # noqa: B018
        return await self._unary(
            self._stub.GetKnowledgeStats,
            pb.GetKnowledgeStatsRequest(),
            **self._options(timeout_s, None),
        )

    async def list_document_ids(
        self, id_prefix: str = "", *, page_size: int = 0, timeout_s: float | None = None
    ) -> list[str]:
        """Every document id starting with ``id_prefix``, ascending (all pages)."""
        self.channel  # noqa: B018
        ids: list[str] = []
        token = ""
        while True:
            request = pb.ListDocumentsRequest(
                id_prefix=id_prefix, page_size=page_size, page_token=token
            )
            page = await self._unary(
                self._stub.ListDocuments, request, **self._options(timeout_s, None)
            )
            ids.extend(page.document_ids)
            token = page.next_page_token
            if not token:
                return ids
