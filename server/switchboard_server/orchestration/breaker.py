"""A circuit breaker, and a composer that sits behind one.

:class:`CircuitBreaker` counts consecutive failures of a dependency. After
``failure_threshold`` of them it opens: calls are refused at once (the pipeline falls
back and marks the turn degraded) instead of each waiting out a failing dependency.
After ``cooldown_s`` the next call is let through as the one probe (half-open) while
the others are still refused; the probe's success closes the breaker, its failure opens
it for another cool-down. A call cut short by the *caller's* deadline
(:class:`~.ports.CallerDeadline`) is no verdict on the dependency: it neither counts
as a failure nor closes the breaker. Transitions are reported to ``on_transition``
(metrics and a log line); the clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog

from switchboard_server.orchestration.ports import CallerDeadline, Composer, DependencyFailed
from switchboard_server.orchestration.values import ComposeInput, Composition

log = structlog.get_logger(__name__)

CIRCUIT_OPEN = "CIRCUIT_OPEN"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Transition = Callable[[str, BreakerState, BreakerState], None]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("BreakerConfig.failure_threshold must be at least 1")
        if self.cooldown_s < 0:
            raise ValueError("BreakerConfig.cooldown_s must not be negative")


class CircuitBreaker:
    """Closed → open after N consecutive failures → half-open probe after a cool-down."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        on_transition: Transition | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._config = config
        self._on_transition = on_transition
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the dependency now (the caller must then report)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._config.cooldown_s:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        self._probing = False
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self._config.failure_threshold
        ):
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def no_verdict(self) -> None:
        """The call ended without saying anything about the dependency (caller's deadline,
        cancellation): a half-open breaker lets the next call probe instead."""
        self._probing = False

    def _move(self, to: BreakerState) -> None:
        before, self._state = self._state, to
        log.warning("circuit_breaker.transition", breaker=self.name, old=before, new=to)
        if self._on_transition is not None:
            self._on_transition(self.name, before, to)


class BreakerComposer:
    """A composer behind a :class:`CircuitBreaker`: refused with ``CIRCUIT_OPEN`` at once
    while it is open, so the pipeline falls back to the rule composer without waiting."""

    def __init__(self, inner: Composer, breaker: CircuitBreaker) -> None:
        self._inner = inner
        self._breaker = breaker

    async def compose(self, request: ComposeInput) -> Composition:
        if not self._breaker.allow():
            raise DependencyFailed(CIRCUIT_OPEN)
        try:
            composition = await self._inner.compose(request)
        except CallerDeadline:
            self._breaker.no_verdict()
            raise
        except DependencyFailed:
            self._breaker.failure()
            raise
        except BaseException:
            self._breaker.no_verdict()
            raise
        self._breaker.success()
        return composition
