"""Values of the chat pipeline (no gRPC): intents, sources, timings, turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum


class Stage(IntEnum):
    """Pipeline stages (values match ``orchestration.v1.Stage``)."""

    CLASSIFY = 1
    RETRIEVE = 2
    COMPOSE = 3
    REMEMBER = 4


class StageStatus(IntEnum):
    """What happened to a stage (values match ``orchestration.v1.StageStatus``)."""

    STARTED = 1
    FINISHED = 2
    FAILED = 3


class Dependency(IntEnum):
    """What can degrade a turn (values match ``orchestration.v1.Dependency``)."""

    CLASSIFICATION = 1
    CONTEXT = 2
    MEMORY = 3
    COMPOSER = 4
    CONVERSATION_LOG = 5


class SourceKind(IntEnum):
    """Where a context source comes from (values match ``SourceKind`` in both protos)."""

    MEMORY = 1
    KNOWLEDGE = 2


@dataclass(frozen=True, slots=True)
class Alternative:
    intent: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Intent:
    """A classification verdict as the pipeline uses it."""

    intent: str
    confidence: float
    out_of_scope: bool = False
    l1: str = ""
    alternatives: tuple[Alternative, ...] = ()
    fallback: bool = False

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.intent.split("/"))


@dataclass(frozen=True, slots=True)
class Source:
    """A ranked piece of context."""

    kind: SourceKind
    id: str
    content: str
    relevance: float
    title: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retrieved:
    """What the context service returned for a query."""

    sources: tuple[Source, ...] = ()
    context: str = ""


@dataclass(frozen=True, slots=True)
class Degradation:
    dependency: Dependency
    reason: str


@dataclass(frozen=True, slots=True)
class StageTiming:
    stage: Stage
    duration_ms: float


@dataclass(frozen=True, slots=True)
class StageEvent:
    stage: Stage
    status: StageStatus
    elapsed_ms: float
    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ChatOptions:
    max_context_results: int = 0
    confidence_threshold: float | None = None
    skip_memory: bool = False


@dataclass(frozen=True, slots=True)
class Composition:
    """A composed reply and the ids of the sources it cites."""

    reply: str
    cited: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ChatResult:
    """Everything a chat turn produced."""

    reply: str
    intent: Intent
    sources: tuple[Source, ...]
    cited: frozenset[str]
    degraded: tuple[Degradation, ...]
    timings: tuple[StageTiming, ...]
    correlation_id: str
    session_id: str
    turn_index: int
    total_ms: float
    replayed: bool = False
    """True when this is the recorded answer of an earlier call with the same request_id."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One logged turn of a conversation."""

    index: int
    user_message: str
    reply: str
    intent: Intent
    timestamp: datetime
    correlation_id: str


@dataclass(frozen=True, slots=True)
class TurnPage:
    turns: tuple[Turn, ...]
    next_index: int | None
    total: int


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """One entry to remember: ``kind`` is ``working`` or ``episodic``."""

    kind: str
    content: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ComposeInput:
    """What a composer gets: the message, the verdict and the retrieved context.

    ``budget_s`` is how long the composer may take before the caller's deadline (less
    what remembering and answering need); None when the caller set no deadline.
    """

    message: str
    intent: Intent
    retrieved: Retrieved
    session_id: str = ""
    budget_s: float | None = None
