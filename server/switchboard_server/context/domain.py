"""The context service's domain: memory, knowledge base, ranking and the cache.

No gRPC here; the servicer validates requests and hands over domain values.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from switchboard_server.context import text
from switchboard_server.context.assembly import assemble, rank
from switchboard_server.context.bm25 import Corpus
from switchboard_server.context.cache import ResultCache
from switchboard_server.context.knowledge_index import KnowledgeIndex
from switchboard_server.context.metrics import ContextMetrics
from switchboard_server.context.store.base import ContextStore, Generations
from switchboard_server.context.values import (
    ALL_MEMORY_TYPES,
    AppendResult,
    ContextQuery,
    ContextResult,
    DeleteResult,
    Document,
    IngestResult,
    KnowledgeStats,
    MemoryStats,
    MemoryType,
    NewMemory,
    Passage,
    PreparedDocument,
    Source,
    SourceKind,
)
from switchboard_server.idempotency import RequestKey

log = structlog.get_logger(__name__)


def hash_id(value: str) -> str:
    """A short stable digest for logs: never log a session id in clear."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def pieces(body: str, max_chars: int) -> list[str]:
    """``text.split_passages(body, max_chars)``, without its work when the answer is
    ``body`` itself: short printable ASCII, single-spaced, no edge spaces (what a bulk
    load sends, one passage per document)."""
    if (
        body
        and len(body) <= max_chars
        and body.isascii()
        and body.isprintable()  # no tab, newline or other whitespace but the space
        and "  " not in body
        and body[0] != " "
        and body[-1] != " "
    ):
        return [body]
    return text.split_passages(body, max_chars)


def prepare(document: Document, passage_max_chars: int) -> PreparedDocument:
    """Split a document into passages (the knowledge index analyses them itself)."""
    doc_id, title = document.id, document.title
    passages = tuple(
        Passage(f"{doc_id}#{i}", doc_id, i, title, content)
        for i, content in enumerate(pieces(document.text, passage_max_chars))
    )
    return PreparedDocument(document, passages)


def _tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    total = 0
    for item in path.rglob("*"):
        with contextlib.suppress(OSError):  # a segment merged away while walking
            if item.is_file():
                total += item.stat().st_size
    return total


class ContextService:
    """Answers GetContext and owns every write; the store and cache come in from outside."""

    def __init__(
        self,
        store: ContextStore,
        knowledge: KnowledgeIndex,
        cache: ResultCache,
        metrics: ContextMetrics,
        *,
        caps: Mapping[MemoryType, int],
        passage_max_chars: int,
        clock: Callable[[], float] = time.time,
        index_path: Path | None = None,
    ) -> None:
        self._store = store
        self._index_path = index_path
        self._knowledge = knowledge
        self._cache = cache
        self._metrics = metrics
        self._caps = dict(caps)
        self._passage_max_chars = passage_max_chars
        self._clock = clock
        # metric children resolved once (labels() takes a lock and a dict lookup per call)
        self._lookups = {r: metrics.cache.labels(result=r) for r in ("hit", "miss")}
        self._retrieval = {r: metrics.retrieval.labels(cache=r) for r in ("hit", "miss")}
        self._appended = {t: metrics.appended.labels(memory_type=t.value) for t in MemoryType}
        self._evicted = {t: metrics.evicted.labels(memory_type=t.value) for t in MemoryType}
        self._sizes = {t: metrics.session_memory.labels(memory_type=t.value) for t in MemoryType}

    # -- memory ---------------------------------------------------------------------

    def _stats(self, counts: Mapping[MemoryType, int]) -> MemoryStats:
        return MemoryStats(counts=dict(counts), caps=self._caps)

    async def append_memory(
        self, session_id: str, entries: Sequence[NewMemory], *, key: RequestKey | None = None
    ) -> AppendResult:
        """Append to the session's memory; a repeat of ``key`` returns the first outcome."""
        prepared = [
            NewMemory(e.type, e.content, e.metadata, tuple(text.terms(e.content))) for e in entries
        ]
        result = await self._store.append_memory(session_id, prepared, self._clock(), key=key)
        if result.replayed:  # nothing was written: nothing to count
            return result
        for entry in entries:
            self._appended[entry.type].inc()
        for memory_type, count in result.evicted.items():
            if count:
                self._evicted[memory_type].inc(count)
        for memory_type in {e.type for e in entries}:
            self._sizes[memory_type].observe(result.counts.get(memory_type, 0))
        if log.is_enabled_for(logging.DEBUG):  # its hash is not computed for nothing
            log.debug(
                "memory.appended",
                session=hash_id(session_id),
                entries=len(entries),
                evicted=sum(result.evicted.values()),
            )
        return result

    def stats_of(self, result: AppendResult) -> MemoryStats:
        return self._stats(result.counts)

    async def clear_memory(
        self, session_id: str, types: Collection[MemoryType], *, key: RequestKey | None = None
    ) -> int:
        deleted = await self._store.clear_memory(session_id, types or ALL_MEMORY_TYPES, key=key)
        log.info(
            "memory.cleared",
            session=hash_id(session_id),
            types=sorted(t.value for t in types) or "all",
            deleted=deleted,
        )
        return deleted

    async def memory_stats(self, session_id: str) -> MemoryStats:
        return self._stats(await self._store.memory_counts(session_id))

    # -- knowledge base -------------------------------------------------------------

    async def ingest(
        self, documents: Sequence[Document], *, key: RequestKey | None = None
    ) -> IngestResult:
        prepared = [prepare(d, self._passage_max_chars) for d in documents]
        last_seq = 0  # unknown: the log's head
        try:
            result = await self._store.ingest(prepared, self._clock(), key=key)
            if result.first_seq:  # the index takes these passages instead of reading them
                self._knowledge.written(result.first_seq, prepared)
                last_seq = result.first_seq + len(prepared) - 1
        finally:  # also after a failure: it may have committed (outcome unknown)
            await self._index_written(last_seq)
        await self._refresh_knowledge_gauges()
        log.info(
            "knowledge.ingested",
            documents=result.document_count,
            passages=result.passage_count,
            replaced=result.replaced_count,
        )
        return result

    async def delete_documents(
        self, document_ids: Sequence[str], *, key: RequestKey | None = None
    ) -> DeleteResult:
        try:
            result = await self._store.delete_documents(document_ids, key=key)
        finally:
            await self._index_written()
        await self._refresh_knowledge_gauges()
        log.info("knowledge.deleted", deleted=result.deleted_count, missing=len(result.missing_ids))
        return result

    async def knowledge_stats(self) -> KnowledgeStats:
        """The store's figures, its bytes on disk plus those of this replica's index."""
        stats = await self._store.knowledge_stats()
        if self._index_path is None:
            return stats
        index_bytes = await asyncio.to_thread(_tree_bytes, self._index_path)
        return replace(stats, index_bytes=stats.index_bytes + index_bytes)

    async def list_document_ids(self, prefix: str, after: str, limit: int) -> list[str]:
        return await self._store.list_document_ids(prefix, after, limit)

    async def _index_written(self, seq: int = 0) -> None:
        """Bring the index up to the write just made (its last log sequence ``seq``, 0
        when unknown: the log's head), so this replica's next query sees it. The write
        is durable already: when the index fails (a full disk), the write still stands
        and the next catch-up applies it."""
        try:
            await self._knowledge.catch_up(seq)
        except Exception:
            log.exception("knowledge.index_behind", applied=self._knowledge.applied_seq)

    async def _refresh_knowledge_gauges(self) -> None:
        documents, passages = await self._store.knowledge_size()
        self._metrics.documents.set(documents)
        self._metrics.passages.set(passages)

    async def seed(self, documents: Sequence[Document]) -> bool:
        """Ingest the built-in knowledge base once per store; True when it did."""
        if await self._store.is_seeded():
            return False
        await self.ingest(documents)
        await self._store.mark_seeded()
        return True

    async def refresh_knowledge_gauges(self) -> None:
        """Set the document and passage gauges from the store: once the service is
        SERVING, since counting a million passages can take a while on a cold cache."""
        await self._refresh_knowledge_gauges()

    # -- retrieval ------------------------------------------------------------------

    async def get_context(self, query: ContextQuery) -> ContextResult:
        started = time.perf_counter()
        if not self._cache.enabled:  # nothing to look up: no generations to read either
            result = await self._compute(query)
            self._observe("miss", started)
            return result
        generations = await self._generations(query.session_id)
        key = query.cache_key()
        cached = self._cache.get(key, generations)
        if cached is not None:
            self._observe("hit", started)
            return replace(cached, cache_hit=True)
        result = await self._compute(query)
        self._cache.put(key, generations, result)
        self._observe("miss", started)
        return result

    async def warmup(self, queries: Sequence[ContextQuery]) -> int:
        """Compute and cache each query; returns how many were computed."""
        for query in queries:
            generations = await self._generations(query.session_id)
            self._cache.put(query.cache_key(), generations, await self._compute(query))
        return len(queries)

    async def _generations(self, session_id: str) -> Generations:
        """The session's counter and, for the knowledge base, the log sequence this
        replica's index reflects: a result is cached under what it was ranked from."""
        generations = await self._store.generations(session_id)
        return replace(generations, knowledge=self._knowledge.applied_seq)

    def _observe(self, result: str, started: float) -> None:
        self._lookups[result].inc()
        self._retrieval[result].observe(time.perf_counter() - started)

    async def _compute(self, query: ContextQuery) -> ContextResult:
        if self._store.concurrent_reads:  # e.g. Redis: the two round trips overlap
            (sources, recency, stats), found = await asyncio.gather(
                self._memory_sources(query), self._knowledge_sources(query)
            )
        else:  # SQLite reads run inline: two gather() tasks would cost more than they save
            sources, recency, stats = await self._memory_sources(query)
            found = await self._knowledge_sources(query)
        sources.extend(found)
        ranked = rank(sources, recency)[: query.max_results]
        context, kept = assemble(ranked, query.max_context_chars)
        return ContextResult(context=context, sources=kept, stats=stats)

    async def _memory_sources(
        self, query: ContextQuery
    ) -> tuple[list[Source], dict[str, int], MemoryStats | None]:
        """Matching memory entries (with their recency) and the session's stats. Memory
        has its own analysis (``text``); the knowledge index analyses the query itself."""
        if not query.session_id:
            return [], {}, None
        records = await self._store.list_memory(query.session_id, query.memory_types)
        if set(query.memory_types) == set(ALL_MEMORY_TYPES):
            counts = dict.fromkeys(ALL_MEMORY_TYPES, 0)
            for record in records:
                counts[record.type] += 1
            stats = self._stats(counts)
        else:
            stats = await self.memory_stats(query.session_id)
        terms = text.query_terms(query.query)
        relevance = Corpus({r.id: r.terms for r in records}).relevance(terms)
        # only the best ``max_results`` by rank()'s order can be kept: make Sources of those
        matched = sorted(
            (-round(score, 6), -record.seq, record.id, score, record)
            for record in records
            if (score := relevance.get(record.id, 0.0)) > 0
        )[: query.max_results]
        sources: list[Source] = []
        recency: dict[str, int] = {}
        for *_, score, record in matched:
            recency[record.id] = record.seq
            sources.append(
                Source(
                    kind=SourceKind.MEMORY,
                    id=record.id,
                    content=record.content,
                    relevance=score,
                    created_at=record.created_at,
                    metadata=record.metadata,
                    memory_type=record.type,
                )
            )
        return sources, recency, stats

    async def _knowledge_sources(self, query: ContextQuery) -> list[Source]:
        """The index analyses the query's text with its own analyzer (``analyzer``)."""
        if not query.include_knowledge_base:
            return []
        found = await self._knowledge.search(query.query, query.max_results)
        if not found:
            return []
        rows = await self._store.knowledge_passages([f.passage_id for f in found])
        return [
            Source(
                kind=SourceKind.KNOWLEDGE,
                id=row.passage_id,
                content=row.content,
                relevance=f.relevance,
                created_at=row.created_at,
                metadata=row.metadata,
                document_id=row.document_id,
                title=row.title,
            )
            for f in found
            if (row := rows.get(f.passage_id)) is not None  # deleted since the index saw it
        ]
