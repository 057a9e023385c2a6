"""The seam between the knowledge base's documents and the indexes that rank them.

The store keeps the documents (durable before ``IngestDocuments`` returns) and a
*document log*: every document a knowledge write touches (a deletion included) takes
the log's next sequence number in the write's transaction, and the log keeps each
document once, at its latest change. Sequences are unique and become visible in
order, so a reader pages through the log by sequence and misses nothing.
A ``KnowledgeIndex`` is derived state, local to one replica: it remembers the last
sequence it applied and catches up from the log (``catch_up``) on open, after each
write through this replica, and at an interval (writes through other replicas).
Applying a change is idempotent (drop the document's passages, add its current
ones), so catching up from any point below the truth converges, and a lost or
corrupt index is rebuilt from sequence 0.

Another ranker (e.g. a dense retriever) implements the same ``KnowledgeIndex``
protocol, fed from the same log, and is fused with the lexical one by passage id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from switchboard_server.context.values import PreparedDocument


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A document changed (added, replaced or deleted) by the write of ``seq``."""

    seq: int
    document_id: str


@dataclass(frozen=True, slots=True)
class IndexedPassage:
    """What an index needs of one passage: its ids and its text (each index analyses
    the text itself, as it analyses a query)."""

    passage_id: str
    document_id: str
    title: str
    content: str


@dataclass(frozen=True, slots=True)
class ScoredPassage:
    """A passage an index found, with its relevance in [0, 1] (best first)."""

    passage_id: str
    relevance: float


class KnowledgeLog(Protocol):
    """The store's document log (implemented by every ``ContextStore``)."""

    async def log_head(self) -> int:
        """The sequence of the latest knowledge write (0 before any)."""
        ...

    async def changes_since(self, seq: int, limit: int) -> list[LogEntry]:
        """At most ``limit`` documents whose latest change is after ``seq``, in
        ascending sequence order (each document once, at its latest change)."""
        ...

    async def passages_of(self, document_ids: Sequence[str]) -> list[IndexedPassage]:
        """The current passages of those documents (none for a deleted one)."""
        ...


class KnowledgeIndex(Protocol):
    """A ranker of passages kept in step with a ``KnowledgeLog``."""

    @property
    def applied_seq(self) -> int:
        """The last log sequence this index reflects (a cache-validity generation)."""
        ...

    async def open(self) -> None:
        """Open (or create, or rebuild when unreadable) and catch up with the log."""
        ...

    async def close(self) -> None:
        """Release the index (files, threads)."""
        ...

    async def catch_up(self, seq: int = 0) -> int:
        """Apply the log up to ``seq`` (0: its head now), at least; returns the new
        ``applied_seq``."""
        ...

    def written(self, first_seq: int, documents: Sequence[PreparedDocument]) -> None:
        """A hint from a write through this replica: ``documents`` were logged at
        ``first_seq``, ``first_seq + 1``, ... An index may take their passages from here
        in the next ``catch_up`` instead of reading them back from the log (a change
        whose sequence it holds is exactly that write); it may also ignore the hint."""
        ...

    async def search(self, query: str, limit: int) -> list[ScoredPassage]:
        """The ``limit`` best passages for the query's text, best first."""
        ...
