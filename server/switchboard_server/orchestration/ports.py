"""What the pipeline needs from the outside world, as small Protocols.

The gRPC adapters live in ``peers.py``; tests plug in fakes. A port raises
:class:`DependencyFailed` with an UPPER_SNAKE reason (``UNAVAILABLE``,
``DEADLINE_EXCEEDED``, ...) when its call fails; the pipeline degrades the turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from switchboard_server.idempotency import RequestKey
from switchboard_server.orchestration.values import (
    ComposeInput,
    Composition,
    Intent,
    MemoryEntry,
    Retrieved,
    Turn,
    TurnPage,
)

DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class DependencyFailed(Exception):
    """A call to a dependency failed; ``reason`` is short and UPPER_SNAKE."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallerDeadline(DependencyFailed):
    """The caller's remaining deadline cut the call short, not the dependency's own
    slowness: it degrades the turn but does not count against the dependency."""

    def __init__(self) -> None:
        super().__init__(DEADLINE_EXCEEDED)


class TurnAlreadyRecorded(Exception):
    """The turn's request_id was recorded meanwhile (a concurrent duplicate, perhaps on
    another replica, committed first): nothing was written; ``outcome`` is the
    recorded answer."""

    def __init__(self, outcome: str) -> None:
        super().__init__("the request_id was recorded meanwhile")
        self.outcome = outcome


class Classifier(Protocol):
    """The classification service."""

    async def classify(
        self, text: str, session_id: str, *, threshold: float | None, top_k: int, budget_s: float
    ) -> Intent: ...


class ContextPort(Protocol):
    """The context service: retrieval and memory."""

    async def get_context(
        self, query: str, session_id: str, *, max_results: int, max_chars: int, budget_s: float
    ) -> Retrieved: ...

    async def append_memory(
        self,
        session_id: str,
        entries: Sequence[MemoryEntry],
        *,
        budget_s: float,
        request_id: str = "",
    ) -> None:
        """Append to the session's memory; ``request_id`` (a UUID) makes a repeat a no-op."""
        ...


class Composer(Protocol):
    """Turns a verdict and context into a reply."""

    async def compose(self, request: ComposeInput) -> Composition: ...


class ConversationLog(Protocol):
    """Durable log of the turns of every session."""

    async def append(
        self,
        session_id: str,
        turn: Turn,
        *,
        key: RequestKey | None = None,
        outcome: Callable[[int], str] = str,
    ) -> int:
        """Store the turn durably; return its index in the session. With a ``key``,
        ``outcome(index)`` is recorded under it in the same transaction; a key recorded
        meanwhile raises :class:`TurnAlreadyRecorded` (and writes nothing)."""
        ...

    async def replay(self, key: RequestKey) -> str | None:
        """The outcome recorded under ``key``, None if none; raises the
        ``idempotency.reused`` error when the key was recorded for another request."""
        ...

    async def page(self, session_id: str, start: int, size: int) -> TurnPage:
        """Turns ``start`` .. ``start + size - 1`` of the session, oldest first."""
        ...
