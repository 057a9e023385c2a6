"""One chat turn in flight: its clock, the caller's deadline, stage events,
degradations and domain spans (used by :class:`~.domain.ChatPipeline`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from opentelemetry import trace

from switchboard_server.errors import DeadlineExceeded
from switchboard_server.orchestration.ports import DEADLINE_EXCEEDED, DependencyFailed
from switchboard_server.orchestration.values import (
    Degradation,
    Dependency,
    Stage,
    StageEvent,
    StageStatus,
    StageTiming,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
EventSink = Callable[[StageEvent], None]


SPAN_NAMES = {
    Stage.CLASSIFY: "chat.classify",
    Stage.RETRIEVE: "chat.retrieve",
    Stage.COMPOSE: "chat.compose",
    Stage.REMEMBER: "chat.remember",
}


class TurnRun:
    """Clock, deadline, events, degradations and domain spans of one turn."""

    def __init__(
        self,
        deadline: float | None,
        margin_s: float,
        sink: EventSink | None,
        tracer: trace.Tracer,
    ) -> None:
        self.tracer = tracer
        self.started = time.monotonic()
        self.deadline = deadline
        self.margin_s = margin_s
        self.sink = sink
        self.timings: list[StageTiming] = []
        self.degraded: list[Degradation] = []

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0

    def budget(self, stage_timeout: float) -> tuple[float, bool]:
        """(timeout for an outbound call, whether the caller's deadline is what bounds it)."""
        if self.deadline is None:
            return stage_timeout, False
        left = self.deadline - time.monotonic() - self.margin_s
        if left <= 0:
            raise DeadlineExceeded("the deadline expired before the turn could finish")
        return (left, True) if left < stage_timeout else (stage_timeout, False)

    def left_s(self, reserve_s: float) -> float | None:
        """Time to the caller's deadline less the margin and ``reserve_s``; None: no deadline."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic() - self.margin_s - reserve_s

    def emit(self, stage: Stage, status: StageStatus, duration_ms: float = 0.0) -> None:
        if self.sink is not None:
            self.sink(StageEvent(stage, status, self.elapsed_ms(), duration_ms))

    async def stage(
        self,
        stage: Stage,
        dependency: Dependency | None,
        limit_s: float,
        call: Callable[[float], Awaitable[T]],
    ) -> T | None:
        """Run one outbound stage; None (and a degradation) when the dependency failed."""
        self.emit(stage, StageStatus.STARTED)
        begun = time.monotonic()
        budget, bound_by_caller = self.budget(limit_s)
        with self.tracer.start_as_current_span(SPAN_NAMES[stage]) as span:
            try:
                result: T | None = await call(budget)
                status = StageStatus.FINISHED
            except DependencyFailed as exc:
                if exc.reason == DEADLINE_EXCEEDED and bound_by_caller:
                    raise DeadlineExceeded(
                        "the deadline expired while waiting for a dependency"
                    ) from exc
                if dependency is not None:
                    self.degraded.append(Degradation(dependency, exc.reason))
                log.warning("chat.dependency_failed", stage=stage.name, reason=exc.reason)
                span.set_attributes({"degraded": True, "degraded.reason": exc.reason})
                result, status = None, StageStatus.FAILED
        duration = (time.monotonic() - begun) * 1000.0
        self.timings.append(StageTiming(stage, duration))
        self.emit(stage, status, duration)
        return result
