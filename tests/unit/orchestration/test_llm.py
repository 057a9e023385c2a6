"""The OpenAI-compatible LLM composer against a local HTTP server speaking that schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from switchboard_server.orchestration.domain import ChatPipeline, PipelineConfig
from switchboard_server.orchestration.ports import DependencyFailed
from switchboard_server.orchestration.values import (
    ChatOptions,
    ComposeInput,
    Dependency,
    Intent,
    Retrieved,
)
from tests.support.fake_llm import Script, completion, composer, fake_llm
from tests.support.orchestration import PASSAGE, FakeClassifier, FakeContext, MemoryLog, rules


@pytest.fixture
def api() -> Iterator[tuple[str, Script]]:
    with fake_llm() as running:
        yield running


REQUEST = ComposeInput(
    "What is Switchboard?", Intent("qa/definition", 0.7, l1="qa"), Retrieved((PASSAGE,))
)


async def test_request_follows_the_chat_completions_schema(api: tuple[str, Script]) -> None:
    url, script = api
    script.body = completion(f"It is a gRPC mesh [{PASSAGE.id}].")
    llm = composer(url)
    try:
        result = await llm.compose(REQUEST)
    finally:
        await llm.aclose()
    assert result.reply == f"It is a gRPC mesh [{PASSAGE.id}]."
    assert result.cited == {PASSAGE.id}
    sent = script.requests[0]
    assert sent["model"] == "test-model"
    assert sent["max_tokens"] == 64
    assert sent["temperature"] == 0.0
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][1]["content"] == "What is Switchboard?"
    assert PASSAGE.id in sent["messages"][0]["content"]
    assert script.headers[0]["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, {"error": {"message": "boom"}}, "UNAVAILABLE"),
        (429, {"error": {"message": "slow down"}}, "RESOURCE_EXHAUSTED"),
        (200, {"choices": []}, "BAD_RESPONSE"),
        (200, completion("   "), "BAD_RESPONSE"),
    ],
)
async def test_api_failures_raise_dependency_failed(
    api: tuple[str, Script], status: int, body: Any, reason: str
) -> None:
    url, script = api
    script.status, script.body = status, body
    llm = composer(url)
    try:
        with pytest.raises(DependencyFailed) as failed:
            await llm.compose(REQUEST)
    finally:
        await llm.aclose()
    assert failed.value.reason == reason


async def test_timeout_and_refused_connection(api: tuple[str, Script]) -> None:
    url, script = api
    script.body, script.delay = completion("late"), 2.0
    llm = composer(url, timeout_s=0.1)
    try:
        with pytest.raises(DependencyFailed) as late:
            await llm.compose(REQUEST)
    finally:
        await llm.aclose()
    assert late.value.reason == "DEADLINE_EXCEEDED"
    refused = composer("http://127.0.0.1:9/v1")
    try:
        with pytest.raises(DependencyFailed) as down:
            await refused.compose(REQUEST)
    finally:
        await refused.aclose()
    assert down.value.reason == "UNAVAILABLE"


async def test_pipeline_falls_back_to_rules_when_the_llm_fails(api: tuple[str, Script]) -> None:
    url, script = api
    script.status, script.body = 503, {"error": {"message": "overloaded"}}
    llm = composer(url)
    pipeline = ChatPipeline(
        FakeClassifier(),
        FakeContext(),
        llm,
        MemoryLog(),
        PipelineConfig(),
        fallback_composer=rules(),
    )
    try:
        result = await pipeline.run("wake me at 7", "s1", ChatOptions(), correlation_id="c")
    finally:
        await llm.aclose()
    assert [(d.dependency, d.reason) for d in result.degraded] == [
        (Dependency.COMPOSER, "UNAVAILABLE")
    ]
    assert "alarm" in result.reply
