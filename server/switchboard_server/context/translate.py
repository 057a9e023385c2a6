"""Proto <-> domain translation with validation (used by the servicer only)."""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard_server.config import Settings
from switchboard_server.context.values import (
    ALL_MEMORY_TYPES,
    ContextQuery,
    ContextResult,
    Document,
    KnowledgeStats,
    MemoryStats,
    MemoryType,
    NewMemory,
    SourceKind,
)
from switchboard_server.validation import Violations

TO_DOMAIN_TYPE = {
    pb.MEMORY_TYPE_WORKING: MemoryType.WORKING,
    pb.MEMORY_TYPE_EPISODIC: MemoryType.EPISODIC,
    pb.MEMORY_TYPE_SEMANTIC: MemoryType.SEMANTIC,
}
TO_PROTO_TYPE = {v: k for k, v in TO_DOMAIN_TYPE.items()}
TO_PROTO_KIND = {
    SourceKind.MEMORY: pb.SOURCE_KIND_MEMORY,
    SourceKind.KNOWLEDGE: pb.SOURCE_KIND_KNOWLEDGE,
}
MAX_RESULTS = 50
MAX_CONTEXT_CHARS = 65_536
LIST_PAGE_SIZE = 1000


def memory_types(v: Violations, field: str, values: Sequence[int]) -> tuple[MemoryType, ...]:
    """Validated memory types; empty means all three."""
    found: list[MemoryType] = []
    for i, value in enumerate(values):
        if v.enum(f"{field}[{i}]", value, TO_DOMAIN_TYPE) in TO_DOMAIN_TYPE:
            found.append(TO_DOMAIN_TYPE[value])  # type: ignore[index]
    return tuple(dict.fromkeys(found)) or ALL_MEMORY_TYPES


def context_query(
    v: Violations, request: pb.GetContextRequest, settings: Settings, prefix: str = ""
) -> ContextQuery:
    """A GetContextRequest as a ContextQuery with server defaults applied."""
    ctx = settings.context
    query = v.text(f"{prefix}query", request.query, max_bytes=settings.core.max_text_bytes)
    session_id = v.session_id(f"{prefix}session_id", request.session_id, required=False)
    types = memory_types(v, f"{prefix}memory_types", request.memory_types)
    max_results = v.int_range(f"{prefix}max_results", request.max_results, 0, MAX_RESULTS)
    max_chars = v.int_range(
        f"{prefix}max_context_chars", request.max_context_chars, 0, MAX_CONTEXT_CHARS
    )
    return ContextQuery(
        query=query,
        session_id=session_id,
        memory_types=types,
        max_results=max_results or ctx.default_max_results,
        include_knowledge_base=request.include_knowledge_base,
        max_context_chars=max_chars or ctx.default_max_context_chars,
    )


def new_memories(
    v: Violations, request: pb.AppendMemoryRequest, settings: Settings
) -> list[NewMemory]:
    v.count("entries", len(request.entries), 1, settings.core.max_batch_items)
    entries = []
    for i, entry in enumerate(request.entries):
        field = f"entries[{i}]"
        value = v.enum(f"{field}.type", entry.type, TO_DOMAIN_TYPE)
        content = v.text(f"{field}.content", entry.content, max_bytes=settings.core.max_text_bytes)
        metadata = v.metadata(f"{field}.metadata", entry.metadata)
        if value in TO_DOMAIN_TYPE:
            entries.append(NewMemory(TO_DOMAIN_TYPE[value], content, metadata))  # type: ignore[index]
    return entries


def documents(
    v: Violations, request: pb.IngestDocumentsRequest, settings: Settings
) -> list[Document]:
    ctx = settings.context
    v.count("documents", len(request.documents), 1, ctx.max_documents_per_request)
    seen: dict[str, int] = {}
    result = []
    for i, doc in enumerate(request.documents):
        field = f"documents[{i}]"
        doc_id = v.identifier(f"{field}.id", doc.id)
        if doc_id in seen:
            v.add(f"{field}.id", f"repeats documents[{seen[doc_id]}].id")
        seen.setdefault(doc_id, i)
        title = v.text(f"{field}.title", doc.title, max_bytes=ctx.max_title_bytes, required=False)
        text = v.text(f"{field}.text", doc.text, max_bytes=ctx.max_document_bytes)
        metadata = v.metadata(f"{field}.metadata", doc.metadata)
        result.append(Document(doc_id, title, text, metadata))
    return result


def document_ids(
    v: Violations, request: pb.DeleteDocumentsRequest, settings: Settings
) -> list[str]:
    v.count(
        "document_ids", len(request.document_ids), 1, settings.context.max_documents_per_request
    )
    ids = [v.identifier(f"document_ids[{i}]", d) for i, d in enumerate(request.document_ids)]
    return list(dict.fromkeys(ids))


def list_documents(v: Violations, request: pb.ListDocumentsRequest) -> tuple[str, str, int]:
    """(id prefix, last id of the previous page, page size) of a ListDocuments request."""
    prefix = request.id_prefix
    if prefix:
        v.identifier("id_prefix", prefix)
    after = request.page_token
    if after:
        v.identifier("page_token", after)
        if not after.startswith(prefix):
            v.add("page_token", "must come from a listing with the same id_prefix")
    size = v.int_range("page_size", request.page_size, 0, LIST_PAGE_SIZE) or LIST_PAGE_SIZE
    return prefix, after, size


def list_response(ids: Sequence[str], page_size: int) -> pb.ListDocumentsResponse:
    """A page of ids; the token is the last id when the page is full (the next may be empty)."""
    token = ids[-1] if len(ids) == page_size else ""
    return pb.ListDocumentsResponse(document_ids=ids, next_page_token=token)


def knowledge_stats_response(stats: KnowledgeStats) -> pb.GetKnowledgeStatsResponse:
    response = pb.GetKnowledgeStatsResponse(
        document_count=stats.documents,
        passage_count=stats.passages,
        index_bytes=stats.index_bytes,
    )
    if stats.updated_at is not None:
        response.last_update_time.FromNanoseconds(int(stats.updated_at * 1e9))
    return response


def stats_message(stats: MemoryStats) -> pb.MemoryStats:
    return pb.MemoryStats(
        working_count=stats.count(MemoryType.WORKING),
        episodic_count=stats.count(MemoryType.EPISODIC),
        semantic_count=stats.count(MemoryType.SEMANTIC),
        working_capacity=stats.caps[MemoryType.WORKING],
        episodic_capacity=stats.caps[MemoryType.EPISODIC],
        semantic_capacity=stats.caps[MemoryType.SEMANTIC],
    )


def context_response(result: ContextResult) -> pb.GetContextResponse:
    """A ContextResult as a GetContextResponse.

    Sources are added in place (``sources.add``, ``timestamp.FromNanoseconds`` on the
    field) rather than built apart and copied in: half the cost for a full context.
    """
    response = pb.GetContextResponse(context=result.context, cache_hit=result.cache_hit)
    if result.stats is not None:
        response.memory_stats.CopyFrom(stats_message(result.stats))
    add = response.sources.add
    for source in result.sources:
        message = add(
            kind=TO_PROTO_KIND[source.kind],
            id=source.id,
            content=source.content,
            relevance=source.relevance,
            memory_type=(
                TO_PROTO_TYPE[source.memory_type]
                if source.memory_type
                else pb.MEMORY_TYPE_UNSPECIFIED
            ),
            document_id=source.document_id,
            title=source.title,
        )
        message.timestamp.FromNanoseconds(int(source.created_at * 1e9))
        if source.metadata:
            message.metadata.update(source.metadata)
    return response
