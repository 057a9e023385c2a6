"""The storage interface every backend implements.

A backend stores session memory and the knowledge base, and keeps two generation
counters that the result cache uses: one per session (bumped by every append or
clear of that session) and one for the knowledge base (bumped by every ingest or
delete). A counter is bumped no earlier than the write it describes is visible, so
a cached result tagged with the counters read *before* it was computed can never
be served after a later write.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from switchboard_server.context.knowledge_index import IndexedPassage, LogEntry
from switchboard_server.context.values import (
    AppendResult,
    DeleteResult,
    IngestResult,
    KnowledgeStats,
    MemoryRecord,
    MemoryType,
    NewMemory,
    PassageRow,
    PreparedDocument,
)
from switchboard_server.idempotency import RequestKey


@dataclass(frozen=True, slots=True)
class Generations:
    """Cache-validity counters: of one session and of the knowledge base."""

    session: int
    knowledge: int


class ContextStore(Protocol):
    """Durable memory + knowledge base. Writes are durable when the awaitable returns.

    Every knowledge write takes the next sequence of the document log in its own
    transaction (``log_head``, ``changes_since``, ``passages_of``: the
    ``knowledge_index.KnowledgeLog`` that feeds each replica's index)."""

    @property
    def concurrent_reads(self) -> bool:
        """True when two reads awaited together overlap (network round trips, reader
        threads); False when reads run inline and awaiting them together only adds tasks."""
        ...

    async def open(self) -> None:
        """Connect / create the schema. Called once before any other method."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise ``Unavailable`` when the store cannot be reached (health checking)."""
        ...

    async def append_memory(
        self,
        session_id: str,
        entries: Sequence[NewMemory],
        now: float,
        *,
        key: RequestKey | None = None,
    ) -> AppendResult:
        """Append in order, evicting the oldest entries of a type over its cap.

        Every write takes an optional idempotency ``key``: the write's outcome is
        recorded under it in the write's own transaction, and a repeat returns that
        outcome without writing (or raises ``idempotency.reused`` when the key came
        with another request)."""
        ...

    async def clear_memory(
        self, session_id: str, types: Collection[MemoryType], *, key: RequestKey | None = None
    ) -> int:
        """Remove the session's entries of ``types``; returns how many."""
        ...

    async def memory_counts(self, session_id: str) -> Mapping[MemoryType, int]:
        """Entries per type of the session."""
        ...

    async def list_memory(
        self, session_id: str, types: Collection[MemoryType]
    ) -> list[MemoryRecord]:
        """The session's entries of ``types``, oldest first."""
        ...

    async def ingest(
        self,
        documents: Sequence[PreparedDocument],
        now: float,
        *,
        key: RequestKey | None = None,
    ) -> IngestResult:
        """Add documents, replacing any with the same id; all or nothing."""
        ...

    async def delete_documents(
        self, document_ids: Sequence[str], *, key: RequestKey | None = None
    ) -> DeleteResult:
        """Remove documents; all or nothing."""
        ...

    async def knowledge_passages(self, passage_ids: Sequence[str]) -> dict[str, PassageRow]:
        """The rows of those passages that exist (the index ranks, the store shows)."""
        ...

    async def log_head(self) -> int:
        """The document log's latest sequence (see ``knowledge_index``)."""
        ...

    async def changes_since(self, seq: int, limit: int) -> list[LogEntry]:
        """Documents changed after ``seq``, ascending, at most ``limit``."""
        ...

    async def passages_of(self, document_ids: Sequence[str]) -> list[IndexedPassage]:
        """The current passages of those documents, for an index."""
        ...

    async def knowledge_size(self) -> tuple[int, int]:
        """(documents, passages) in the knowledge base."""
        ...

    async def knowledge_stats(self) -> KnowledgeStats:
        """Counts, bytes on disk and time of the last ingest of the knowledge base."""
        ...

    async def list_document_ids(self, prefix: str, after: str, limit: int) -> list[str]:
        """At most ``limit`` document ids starting with ``prefix`` and greater than
        ``after``, ascending."""
        ...

    async def generations(self, session_id: str) -> Generations:
        """Current cache-validity counters."""
        ...

    async def is_seeded(self) -> bool:
        """Whether the built-in knowledge base was ingested once already."""
        ...

    async def mark_seeded(self) -> None:
        """Record that the built-in knowledge base was ingested."""
        ...
