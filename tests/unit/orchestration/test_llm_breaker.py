"""The LLM composer behind its circuit breaker and the caller's deadline, against a local
fake of the OpenAI chat-completions API; the turn falls back to the rule composer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from switchboard_server.orchestration.domain import ChatPipeline, PipelineConfig
from switchboard_server.orchestration.metrics import BreakerMetrics
from switchboard_server.orchestration.module import llm_behind_breaker
from switchboard_server.orchestration.ports import Composer
from switchboard_server.orchestration.settings import OrchestrationSettings
from switchboard_server.orchestration.values import ChatOptions, ChatResult, Dependency
from tests.support.fake_llm import Script, completion, composer, fake_llm
from tests.support.orchestration import FakeClassifier, FakeContext, MemoryLog, rules

COOLDOWN_S = 0.3


@pytest.fixture
def api() -> Iterator[tuple[str, Script]]:
    with fake_llm() as running:
        yield running


def pipeline(llm: Composer) -> ChatPipeline:
    return ChatPipeline(
        FakeClassifier(),
        FakeContext(),
        llm,
        MemoryLog(),
        PipelineConfig(),
        fallback_composer=rules(),
    )


def degraded(result: ChatResult) -> list[tuple[Dependency, str]]:
    return [(d.dependency, d.reason) for d in result.degraded]


def state(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        s: registry.get_sample_value(
            "switchboard_circuit_breaker_state", {"breaker": "llm", "state": s}
        )
        for s in ("closed", "open", "half_open")
    }


def entered(registry: CollectorRegistry, s: str) -> float | None:
    return registry.get_sample_value(
        "switchboard_circuit_breaker_transitions_total", {"breaker": "llm", "state": s}
    )


async def timed(chat: ChatPipeline, deadline: float | None = None) -> tuple[ChatResult, float]:
    begun = time.monotonic()
    result = await chat.run(
        "wake me at 7", "s1", ChatOptions(), correlation_id="c", deadline=deadline
    )
    return result, time.monotonic() - begun


async def test_the_breaker_opens_skips_the_llm_then_probes_and_closes(
    api: tuple[str, Script],
) -> None:
    url, script = api
    script.body, script.delay = completion("too late"), 5.0  # a hung LLM
    registry = CollectorRegistry()
    settings = OrchestrationSettings(
        llm_breaker_failures=3, llm_breaker_cooldown_ms=COOLDOWN_S * 1000
    )
    llm = composer(url, timeout_s=0.2)
    chat = pipeline(llm_behind_breaker(llm, settings, BreakerMetrics(registry)))
    try:
        assert state(registry) == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
        for _ in range(3):  # each waits out the LLM's own 0.2 s timeout
            result, took = await timed(chat)
            assert degraded(result) == [(Dependency.COMPOSER, "DEADLINE_EXCEEDED")]
            assert took >= 0.2
            assert "alarm" in result.reply  # the rule composer's reply
        assert len(script.requests) == 3
        assert state(registry) == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
        assert entered(registry, "open") == 1.0

        for _ in range(5):  # open: no call to the LLM, no wait
            result, took = await timed(chat)
            assert degraded(result) == [(Dependency.COMPOSER, "CIRCUIT_OPEN")]
            assert took < 0.1
        assert len(script.requests) == 3

        await asyncio.sleep(COOLDOWN_S)
        script.delay, script.body = 0.0, completion("Your alarm is set for seven.")
        result, _ = await timed(chat)  # the probe
        assert degraded(result) == []
        assert result.reply == "Your alarm is set for seven."
        assert len(script.requests) == 4
        assert state(registry) == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
        assert (entered(registry, "half_open"), entered(registry, "closed")) == (1.0, 1.0)
    finally:
        await llm.aclose()


async def test_while_half_open_only_the_probe_reaches_the_llm(api: tuple[str, Script]) -> None:
    url, script = api
    script.status, script.body = 500, {"error": {"message": "down"}}
    registry = CollectorRegistry()
    settings = OrchestrationSettings(llm_breaker_failures=1, llm_breaker_cooldown_ms=100)
    llm = composer(url)
    chat = pipeline(llm_behind_breaker(llm, settings, BreakerMetrics(registry)))
    try:
        await timed(chat)
        assert state(registry)["open"] == 1.0
        await asyncio.sleep(0.1)
        script.status, script.body, script.delay = 200, completion("ok then"), 0.3
        results = await asyncio.gather(*(timed(chat) for _ in range(4)))
        assert len(script.requests) == 2  # the failure, then one probe for four turns
        reasons = sorted(r.degraded[0].reason if r.degraded else "-" for r, _ in results)
        assert reasons == ["-", "CIRCUIT_OPEN", "CIRCUIT_OPEN", "CIRCUIT_OPEN"]
        assert state(registry)["closed"] == 1.0
    finally:
        await llm.aclose()


async def test_a_slow_llm_and_a_short_deadline_degrade_to_rules_not_fail(
    api: tuple[str, Script],
) -> None:
    """The compose step gets the caller's remaining time (less the reserve), not the
    LLM's 5 s timeout; running out of it is not held against the LLM."""
    url, script = api
    script.body, script.delay = completion("too late"), 3.0
    registry = CollectorRegistry()
    settings = OrchestrationSettings(llm_breaker_failures=1)
    llm = composer(url, timeout_s=5.0)
    chat = pipeline(llm_behind_breaker(llm, settings, BreakerMetrics(registry)))
    try:
        for _ in range(2):
            result, took = await timed(chat, deadline=time.monotonic() + 0.5)
            assert degraded(result) == [(Dependency.COMPOSER, "DEADLINE_EXCEEDED")]
            assert "alarm" in result.reply
            assert result.turn_index >= 0
            assert 0.3 < took < 0.5
        assert len(script.requests) == 2
        assert state(registry)["closed"] == 1.0  # the caller's deadline is no LLM failure
    finally:
        await llm.aclose()


async def test_no_time_left_for_the_llm_skips_it(api: tuple[str, Script]) -> None:
    url, script = api
    script.body = completion("never asked")
    llm = composer(url)
    chat = ChatPipeline(
        FakeClassifier(delay=0.22),
        FakeContext(),
        llm,
        MemoryLog(),
        PipelineConfig(compose_reserve_s=0.1),
        fallback_composer=rules(),
    )
    try:
        result, _ = await timed(chat, deadline=time.monotonic() + 0.3)
    finally:
        await llm.aclose()
    assert degraded(result) == [(Dependency.COMPOSER, "DEADLINE_EXCEEDED")]
    assert script.requests == []
