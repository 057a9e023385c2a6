"""The chat pipeline with fake ports: stages, degradation rules and deadlines."""

from __future__ import annotations

import asyncio
import time

import pytest

from switchboard_server.errors import DeadlineExceeded
from switchboard_server.orchestration.ports import DependencyFailed
from switchboard_server.orchestration.values import (
    ChatOptions,
    ComposeInput,
    Composition,
    Dependency,
    Intent,
    Stage,
    StageEvent,
    StageStatus,
)
from tests.support.orchestration import (
    CONFIG,
    PASSAGE,
    FakeClassifier,
    FakeContext,
    MemoryLog,
    make,
)


async def test_happy_turn_records_every_stage_and_writes_memory_and_log() -> None:
    pipeline, _, context, conversation_log = make()
    events: list[StageEvent] = []
    result = await pipeline.run(
        "wake me up at 7", "s1", ChatOptions(), correlation_id="c-1", on_event=events.append
    )
    assert result.intent.intent == "alarm/set"
    assert result.degraded == ()
    assert [t.stage for t in result.timings][-2:] == [Stage.COMPOSE, Stage.REMEMBER]
    assert {t.stage for t in result.timings} == set(Stage)
    assert result.correlation_id == "c-1"
    assert result.turn_index == 0
    assert "alarm" in result.reply
    kinds = [e.kind for e in context.appended[0][1]]
    assert kinds == ["working", "working", "episodic"]
    assert conversation_log.turns["s1"][0].reply == result.reply
    started = [e.stage for e in events if e.status is StageStatus.STARTED]
    finished = [e.stage for e in events if e.status is StageStatus.FINISHED]
    assert set(started) == set(finished) == set(Stage)


async def test_second_turn_gets_next_index() -> None:
    pipeline, *_ = make()
    await pipeline.run("hi", "s1", ChatOptions(), correlation_id="a")
    second = await pipeline.run("hi again", "s1", ChatOptions(), correlation_id="b")
    assert second.turn_index == 1


async def test_classification_down_uses_fallback_intent_and_still_replies() -> None:
    pipeline, *_ = make(classifier=FakeClassifier(fail="UNAVAILABLE"))
    result = await pipeline.run("set an alarm", "s1", ChatOptions(), correlation_id="c")
    assert result.intent.fallback is True
    assert result.intent.intent == "general/fallback"
    assert result.reply
    assert [(d.dependency, d.reason) for d in result.degraded] == [
        (Dependency.CLASSIFICATION, "UNAVAILABLE")
    ]


async def test_context_down_replies_without_sources() -> None:
    pipeline, *_ = make(context=FakeContext(fail_get="UNAVAILABLE"))
    result = await pipeline.run("what is switchboard?", "s1", ChatOptions(), correlation_id="c")
    assert result.sources == ()
    assert result.cited == frozenset()
    assert [d.dependency for d in result.degraded] == [Dependency.CONTEXT]


async def test_memory_write_failure_returns_reply_and_says_so() -> None:
    pipeline, *_ = make(context=FakeContext(fail_append="UNAVAILABLE"))
    events: list[StageEvent] = []
    result = await pipeline.run(
        "hello", "s1", ChatOptions(), correlation_id="c", on_event=events.append
    )
    assert result.reply
    assert [d.dependency for d in result.degraded] == [Dependency.MEMORY]
    assert events[-1].stage is Stage.REMEMBER
    assert events[-1].status is StageStatus.FAILED


async def test_conversation_log_failure_is_a_degradation_not_an_error() -> None:
    pipeline, *_ = make(conversation_log=MemoryLog(fail=True))
    result = await pipeline.run("hello", "s1", ChatOptions(), correlation_id="c")
    assert [d.dependency for d in result.degraded] == [Dependency.CONVERSATION_LOG]
    assert result.turn_index == -1


async def test_skip_memory_writes_no_memory() -> None:
    pipeline, _, context, conversation_log = make()
    await pipeline.run("hello", "s1", ChatOptions(skip_memory=True), correlation_id="c")
    assert context.appended == []
    assert len(conversation_log.turns["s1"]) == 1


async def test_outbound_budget_is_caller_time_minus_margin() -> None:
    pipeline, classifier, context, _ = make()
    deadline = time.monotonic() + 0.2
    await pipeline.run("hello", "s1", ChatOptions(), correlation_id="c", deadline=deadline)
    assert 0.1 < classifier.budgets[0] <= 0.19
    assert 0.1 < context.budgets[0] <= 0.19


async def test_stage_timeout_bounds_budget_when_caller_has_plenty() -> None:
    pipeline, classifier, *_ = make()
    await pipeline.run(
        "hello", "s1", ChatOptions(), correlation_id="c", deadline=time.monotonic() + 30
    )
    assert classifier.budgets == [CONFIG.classify_timeout_s]


async def test_slow_dependency_within_own_timeout_degrades() -> None:
    pipeline, *_ = make(classifier=FakeClassifier(delay=1.0))
    result = await pipeline.run(
        "hello", "s1", ChatOptions(), correlation_id="c", deadline=time.monotonic() + 5
    )
    assert [(d.dependency, d.reason) for d in result.degraded] == [
        (Dependency.CLASSIFICATION, "DEADLINE_EXCEEDED")
    ]


async def test_caller_deadline_running_out_fails_the_turn_and_cancels_siblings() -> None:
    classifier = FakeClassifier(delay=5.0)
    pipeline, *_ = make(classifier=classifier, context=FakeContext(delay=5.0))
    with pytest.raises(DeadlineExceeded):
        await pipeline.run(
            "hello", "s1", ChatOptions(), correlation_id="c", deadline=time.monotonic() + 0.05
        )


async def test_expired_deadline_fails_before_any_call() -> None:
    pipeline, classifier, *_ = make()
    with pytest.raises(DeadlineExceeded):
        await pipeline.run(
            "hello", "s1", ChatOptions(), correlation_id="c", deadline=time.monotonic() - 1
        )
    assert classifier.budgets == []


async def test_cancelling_the_turn_cancels_the_calls_in_flight() -> None:
    classifier = FakeClassifier(delay=10.0)
    pipeline, *_ = make(classifier=classifier)
    task = asyncio.create_task(pipeline.run("hello", "s1", ChatOptions(), correlation_id="c"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert classifier.cancelled


class FailingComposer:
    async def compose(self, request: ComposeInput) -> Composition:
        raise DependencyFailed("UNAVAILABLE")


async def test_failing_composer_falls_back_to_rules_and_is_flagged() -> None:
    pipeline, *_ = make(composer=FailingComposer())
    result = await pipeline.run("what is switchboard?", "s1", ChatOptions(), correlation_id="c")
    assert [d.dependency for d in result.degraded] == [Dependency.COMPOSER]
    assert PASSAGE.id in result.reply


async def test_out_of_scope_offers_alternatives() -> None:
    intent = Intent(
        "oos",
        0.2,
        out_of_scope=True,
        l1="",
        alternatives=(),
    )
    pipeline, *_ = make(classifier=FakeClassifier(intent=intent), context=FakeContext(sources=()))
    result = await pipeline.run("blorp the zib", "s1", ChatOptions(), correlation_id="c")
    assert result.reply.startswith("I'm not sure what you mean")
