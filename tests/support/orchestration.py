"""In-memory fakes of the chat pipeline's ports, and the rule composer it falls back to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from switchboard_server.idempotency import RequestKey, reused
from switchboard_server.orchestration.composer import RuleComposer, default_registry
from switchboard_server.orchestration.domain import ChatPipeline, PipelineConfig
from switchboard_server.orchestration.ports import DependencyFailed
from switchboard_server.orchestration.values import (
    Intent,
    MemoryEntry,
    Retrieved,
    Source,
    SourceKind,
    Turn,
    TurnPage,
)


def rules() -> RuleComposer:
    return RuleComposer(default_registry("general/fallback"), min_relevance=0.05, alternatives=3)


PASSAGE = Source(
    SourceKind.KNOWLEDGE,
    "switchboard-overview#0",
    "Switchboard is a gRPC service mesh for conversational assistants. It routes chat.",
    0.8,
    title="Switchboard overview",
)


@dataclass
class FakeClassifier:
    intent: Intent = field(default_factory=lambda: Intent("alarm/set", 0.9, l1="alarm"))
    fail: str | None = None
    delay: float = 0.0
    budgets: list[float] = field(default_factory=list)
    cancelled: bool = False

    async def classify(
        self, text: str, session_id: str, *, threshold: float | None, top_k: int, budget_s: float
    ) -> Intent:
        self.budgets.append(budget_s)
        try:
            await asyncio.sleep(min(self.delay, budget_s) if self.delay else 0)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.delay > budget_s:
            raise DependencyFailed("DEADLINE_EXCEEDED")
        if self.fail:
            raise DependencyFailed(self.fail)
        return self.intent


@dataclass
class FakeContext:
    sources: tuple[Source, ...] = (PASSAGE,)
    fail_get: str | None = None
    fail_append: str | None = None
    delay: float = 0.0
    appended: list[tuple[str, list[MemoryEntry]]] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    async def get_context(
        self, query: str, session_id: str, *, max_results: int, max_chars: int, budget_s: float
    ) -> Retrieved:
        self.budgets.append(budget_s)
        if self.delay:
            await asyncio.sleep(min(self.delay, budget_s))
            if self.delay > budget_s:
                raise DependencyFailed("DEADLINE_EXCEEDED")
        if self.fail_get:
            raise DependencyFailed(self.fail_get)
        return Retrieved(self.sources[:max_results])

    async def append_memory(
        self,
        session_id: str,
        entries: Sequence[MemoryEntry],
        *,
        budget_s: float,
        request_id: str = "",
    ) -> None:
        if self.fail_append:
            raise DependencyFailed(self.fail_append)
        self.appended.append((session_id, list(entries)))
        self.request_ids.append(request_id)


@dataclass
class MemoryLog:
    turns: dict[str, list[Turn]] = field(default_factory=dict)
    fail: bool = False
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def append(
        self,
        session_id: str,
        turn: Turn,
        *,
        key: RequestKey | None = None,
        outcome: Callable[[int], str] = str,
    ) -> int:
        if self.fail:
            raise DependencyFailed("STORAGE_ERROR")
        turns = self.turns.setdefault(session_id, [])
        turns.append(replace(turn, index=len(turns)))
        if key is not None:
            self.outcomes[key.request_id] = (key.request_hash, outcome(len(turns) - 1))
        return len(turns) - 1

    async def replay(self, key: RequestKey) -> str | None:
        recorded = self.outcomes.get(key.request_id)
        if recorded is None:
            return None
        if recorded[0] != key.request_hash:
            raise reused(key)
        return recorded[1]

    async def page(self, session_id: str, start: int, size: int) -> TurnPage:
        turns = self.turns.get(session_id, [])
        chunk = tuple(turns[start : start + size])
        nxt = start + size if start + size < len(turns) else None
        return TurnPage(chunk, nxt, len(turns))


CONFIG = PipelineConfig(margin_s=0.01, classify_timeout_s=0.5, context_timeout_s=0.5)


def make(
    classifier: FakeClassifier | None = None,
    context: FakeContext | None = None,
    conversation_log: MemoryLog | None = None,
    composer: object | None = None,
) -> tuple[ChatPipeline, FakeClassifier, FakeContext, MemoryLog]:
    classifier = classifier or FakeClassifier()
    context = context or FakeContext()
    conversation_log = conversation_log or MemoryLog()
    pipeline = ChatPipeline(
        classifier,
        context,
        composer or rules(),  # type: ignore[arg-type]
        conversation_log,
        CONFIG,
        fallback_composer=rules(),
    )
    return pipeline, classifier, context, conversation_log
