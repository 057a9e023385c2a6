"""Domain metrics of the orchestration service (bounded labels only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from switchboard_server.orchestration.breaker import BreakerState
from switchboard_server.orchestration.values import ChatResult


class ChatMetrics:
    """Turns, degradations and stage durations, registered in the server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.turns = Counter(
            "switchboard_chat_turns_total",
            "Chat turns answered, by whether any dependency degraded them.",
            ["degraded"],
            registry=registry,
        )
        self.degradations = Counter(
            "switchboard_chat_degradations_total",
            "Dependencies that failed during a chat turn.",
            ["dependency", "reason"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "switchboard_chat_stage_seconds",
            "Wall time of each chat pipeline stage.",
            ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )

    def observe(self, result: ChatResult) -> None:
        self.turns.labels(degraded=str(bool(result.degraded)).lower()).inc()
        for item in result.degraded:
            self.degradations.labels(
                dependency=item.dependency.name.lower(), reason=item.reason[:32]
            ).inc()
        for timing in result.timings:
            self.stage_seconds.labels(stage=timing.stage.name.lower()).observe(
                timing.duration_ms / 1000.0
            )


class BreakerMetrics:
    """State (one-hot by ``state``) and transitions of the circuit breakers of a process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "switchboard_circuit_breaker_state",
            "1 for the state each circuit breaker is in, 0 for the others.",
            ["breaker", "state"],
            registry=registry,
        )
        self.transitions = Counter(
            "switchboard_circuit_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered.",
            ["breaker", "state"],
            registry=registry,
        )

    def register(self, breaker: str) -> None:
        """Show ``breaker`` as closed before its first transition."""
        self._set(breaker, BreakerState.CLOSED)
        for state in BreakerState:
            self.transitions.labels(breaker=breaker, state=state.value)

    def on_transition(self, breaker: str, old: BreakerState, new: BreakerState) -> None:
        self._set(breaker, new)
        self.transitions.labels(breaker=breaker, state=new.value).inc()

    def _set(self, breaker: str, current: BreakerState) -> None:
        for state in BreakerState:
            self.state.labels(breaker=breaker, state=state.value).set(int(state is current))
