"""Chat turns with a request_id: recorded once, replayed after, committed only in time."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from switchboard_server.errors import AlreadyExists, DeadlineExceeded, ErrorReason
from switchboard_server.idempotency import RequestKey
from switchboard_server.orchestration.domain import ChatPipeline
from switchboard_server.orchestration.values import ChatOptions, ChatResult
from tests.support.orchestration import CONFIG, FakeClassifier, FakeContext, MemoryLog, make, rules


def answer(result: object) -> tuple[object, ...]:
    """What a replay repeats: all but the timings of the remember stage and the total."""
    assert isinstance(result, ChatResult)
    return (
        result.reply, result.intent, result.sources, result.cited, result.degraded,
        result.correlation_id, result.session_id, result.turn_index,
    )  # fmt: skip


def key(request_hash: str = "h1") -> RequestKey:
    return RequestKey(str(uuid.uuid4()), request_hash)


async def chat(pipeline: ChatPipeline, k: RequestKey, **kwargs: Any) -> object:
    return await pipeline.run(
        "wake me up at 7", "s1", ChatOptions(), correlation_id="c", key=k, **kwargs
    )


async def test_a_repeat_gets_the_first_answer_and_writes_no_second_turn() -> None:
    pipeline, classifier, context, conversation_log = make()
    k = key()
    first = await chat(pipeline, k)
    classifier.intent = replace(classifier.intent, intent="weather/query")  # would change it
    again = await chat(pipeline, k)
    assert answer(again) == answer(first)
    assert len(conversation_log.turns["s1"]) == 1
    # the replay sends the memory write again under the same derived id (a no-op there)
    assert len(set(context.request_ids)) == 1
    assert context.request_ids[0] == k.derived_id("memory")
    assert context.request_ids[0] != k.request_id
    assert context.appended[1] == context.appended[0]  # the same request: same hash there


async def test_a_key_reused_for_another_request_is_refused() -> None:
    pipeline, _, _, conversation_log = make()
    k = key("h1")
    await chat(pipeline, k)
    with pytest.raises(AlreadyExists) as refused:
        await chat(pipeline, RequestKey(k.request_id, "h2"))
    assert refused.value.reason == ErrorReason.REQUEST_ID_REUSED
    assert len(conversation_log.turns["s1"]) == 1


async def test_concurrent_duplicates_run_the_turn_once() -> None:
    pipeline, classifier, _, conversation_log = make(FakeClassifier(delay=0.02))
    k = key()
    results = await asyncio.gather(*(chat(pipeline, k) for _ in range(10)))
    assert len(conversation_log.turns["s1"]) == 1
    assert all(answer(r) == answer(results[0]) for r in results)
    assert len(classifier.budgets) == 1  # the pipeline itself ran once
    assert len(pipeline._gate) == 0


async def test_without_enough_time_left_the_turn_is_not_written() -> None:
    context, conversation_log = FakeContext(), MemoryLog()
    pipeline = ChatPipeline(
        FakeClassifier(delay=0.25),
        context,
        rules(),
        conversation_log,
        replace(CONFIG, commit_reserve_s=0.2),
        fallback_composer=rules(),
    )
    with pytest.raises(DeadlineExceeded):
        await chat(pipeline, key(), deadline=time.monotonic() + 0.4)
    assert conversation_log.turns == {}
    assert context.appended == []


async def test_with_a_key_memory_is_written_only_after_the_turn_committed() -> None:
    conversation_log = MemoryLog()
    seen_at_memory_write: list[int] = []

    class Ordered(FakeContext):
        async def append_memory(self, session_id: str, entries: Any, **kwargs: Any) -> None:
            seen_at_memory_write.append(len(conversation_log.turns.get(session_id, [])))
            await super().append_memory(session_id, entries, **kwargs)

    pipeline, *_ = make(context=Ordered(), conversation_log=conversation_log)
    await chat(pipeline, key())
    assert seen_at_memory_write == [1]  # the log held the turn before memory was written

    conversation_log.fail = True  # no commit: memory is still written (the turn answered)
    result = await chat(pipeline, key("h2"))
    assert isinstance(result, ChatResult)
    assert seen_at_memory_write == [1, 1]
