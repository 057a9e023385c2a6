"""Domain values of the context service (no gRPC, no storage).

Values are frozen dataclasses, except the ones made per stored row of a query
(``MemoryRecord``, ``PassageRow``, ``Source``: dozens per GetContext): a frozen
dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
several times a plain assignment on a path every query takes. Nothing changes them
after they are made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class MemoryType(StrEnum):
    """The three kinds of session memory."""

    WORKING = "working"
    EPISODIC = "episodic"
    SEMANTIC = "semantic"


ALL_MEMORY_TYPES: tuple[MemoryType, ...] = tuple(MemoryType)


class SourceKind(StrEnum):
    """Where a ranked source comes from."""

    MEMORY = "memory"
    KNOWLEDGE = "knowledge"


@dataclass(frozen=True, slots=True)
class NewMemory:
    """One entry to append."""

    type: MemoryType
    content: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    terms: tuple[str, ...] = ()


@dataclass(slots=True)
class MemoryRecord:
    """A stored memory entry; ``seq`` grows with every append (recency order)."""

    id: str
    type: MemoryType
    content: str
    metadata: Mapping[str, str]
    created_at: float
    seq: int
    terms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """Entries per type and the caps."""

    counts: Mapping[MemoryType, int]
    caps: Mapping[MemoryType, int]

    def count(self, memory_type: MemoryType) -> int:
        return self.counts.get(memory_type, 0)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: ids in request order, counts after it, entries evicted;
    ``replayed`` when it is the recorded outcome of an earlier call with its key."""

    entry_ids: tuple[str, ...]
    counts: Mapping[MemoryType, int]
    evicted: Mapping[MemoryType, int]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Document:
    """A knowledge-base document as ingested."""

    id: str
    title: str
    text: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Passage:
    """A piece of a document (the index analyses its title and content itself)."""

    id: str
    document_id: str
    ordinal: int
    title: str
    content: str


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A document split into passages, ready to store."""

    document: Document
    passages: tuple[Passage, ...]


@dataclass(frozen=True, slots=True)
class KnowledgeStats:
    """Size of the knowledge base: counts, bytes on disk (0: unknown), last ingest (None:
    unknown or empty)."""

    documents: int
    passages: int
    index_bytes: int
    updated_at: float | None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Counts of one ingest."""

    document_count: int
    passage_count: int
    replaced_count: int
    # the log sequence the write gave its first document (the next ones follow in
    # order), 0 when unknown (a replayed outcome, a store that does not say)
    first_seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Counts of one delete."""

    deleted_count: int
    missing_ids: tuple[str, ...]


@dataclass(slots=True)
class PassageRow:
    """What a result shows of a knowledge passage (``metadata`` is not to be changed)."""

    passage_id: str
    document_id: str
    title: str
    content: str
    metadata: Mapping[str, str]
    created_at: float


@dataclass(slots=True)
class Source:
    """A ranked source of the context block."""

    kind: SourceKind
    id: str
    content: str
    relevance: float
    created_at: float
    metadata: Mapping[str, str]
    memory_type: MemoryType | None = None
    document_id: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class ContextQuery:
    """A validated GetContext request, with server defaults applied."""

    query: str
    session_id: str
    memory_types: tuple[MemoryType, ...]
    max_results: int
    include_knowledge_base: bool
    max_context_chars: int

    def cache_key(self) -> tuple[object, ...]:
        return (
            " ".join(self.query.lower().split()),
            self.session_id,
            tuple(sorted(self.memory_types)),
            self.max_results,
            self.include_knowledge_base,
            self.max_context_chars,
        )


@dataclass(frozen=True, slots=True)
class ContextResult:
    """The answer to a ContextQuery."""

    context: str
    sources: tuple[Source, ...]
    stats: MemoryStats | None
    cache_hit: bool = False
