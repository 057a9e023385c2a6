"""The circuit breaker's states on a fake clock."""

from __future__ import annotations

import pytest

from switchboard_server.orchestration.breaker import BreakerConfig, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def state(b: CircuitBreaker) -> BreakerState:
    """The state now (a call, so that type checkers do not narrow it across calls)."""
    return b.state


def breaker(clock: Clock, moves: list[tuple[str, str]]) -> CircuitBreaker:
    return CircuitBreaker(
        "llm",
        BreakerConfig(failure_threshold=3, cooldown_s=10.0),
        on_transition=lambda name, old, new: moves.append((old.value, new.value)),
        clock=clock,
    )


def test_it_opens_after_n_consecutive_failures_only(clock: Clock) -> None:
    moves: list[tuple[str, str]] = []
    b = breaker(clock, moves)
    for _ in range(2):
        assert b.allow()
        b.failure()
    b.success()  # not consecutive any more
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert state(b) is BreakerState.CLOSED
    assert b.allow()
    b.failure()
    assert state(b) is BreakerState.OPEN
    assert moves == [("closed", "open")]
    clock.now += 9.9
    assert not b.allow()


def test_after_the_cooldown_one_probe_goes_and_its_success_closes(clock: Clock) -> None:
    moves: list[tuple[str, str]] = []
    b = breaker(clock, moves)
    for _ in range(3):
        b.allow()
        b.failure()
    clock.now += 10.0
    assert b.allow()  # the probe
    assert state(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # only one at a time
    b.success()
    assert state(b) is BreakerState.CLOSED
    assert b.allow()
    assert b.allow()
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_it_for_another_cooldown(clock: Clock) -> None:
    moves: list[tuple[str, str]] = []
    b = breaker(clock, moves)
    for _ in range(3):
        b.allow()
        b.failure()
    clock.now += 10.0
    assert b.allow()
    b.failure()
    assert state(b) is BreakerState.OPEN
    clock.now += 5.0
    assert not b.allow()
    clock.now += 5.0
    assert b.allow()
    assert moves[-2:] == [("half_open", "open"), ("open", "half_open")]


def test_a_probe_without_verdict_lets_the_next_call_probe(clock: Clock) -> None:
    b = breaker(clock, [])
    for _ in range(3):
        b.allow()
        b.failure()
    clock.now += 10.0
    assert b.allow()
    assert not b.allow()
    b.no_verdict()  # the caller's deadline cut the probe short
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allow()


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_a_bad_config_is_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="BreakerConfig"):
        BreakerConfig(threshold, cooldown)
