"""The classification service over a real channel, serving the bundled HWU64 model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.classification.v1 import classification_service_pb2 as pb
from tests.support.classification import (
    Running,
    classification_server,
    seed_models,
)
from tests.support.rich_status import violated_fields as bad_fields

SERVICE = "switchboard.classification.v1.ClassificationService"


@pytest.fixture
async def served(tmp_path: Path, hwu64_models: Path) -> AsyncIterator[Running]:
    seed_models(hwu64_models, tmp_path)
    async with classification_server(tmp_path) as running:
        yield running


async def test_serves_hwu64_intents_with_hierarchy(served: Running) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    cases = {
        "wake me up at seven tomorrow morning": "alarm/set",
        "what's the weather going to be like in london": "weather/query",
        "play my favourite rock playlist": "play/music",
    }
    for text, expected in cases.items():
        result = (await served.stub.Classify(pb.ClassifyRequest(text=text))).classification
        assert result.intent == expected, text
        assert not result.out_of_scope
        assert result.hierarchy.l1 == expected.split("/")[0]
        assert result.hierarchy.l2 == expected.split("/")[1]
        assert result.hierarchy.l1_confidence >= result.hierarchy.l2_confidence - 1e-6
        assert result.hierarchy.l2_confidence == pytest.approx(result.confidence, abs=1e-5)
        assert result.alternatives[0].intent == expected
        assert len(result.alternatives) == 3
        assert result.model_version.startswith("tfidf-")
    info = await served.stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.backend == pb.BACKEND_TFIDF
    assert (info.intent_count, info.domain_count, info.training_example_count) == (64, 18, 8954)
    assert 0.05 <= info.default_confidence_threshold <= 0.7
    assert len(info.artifact_key) == 64
    intents = await served.stub.ListIntents(pb.ListIntentsRequest())
    assert len(intents.intents) == 64
    assert len(intents.domains) == 18
    assert [i.path for i in intents.intents] == sorted(i.path for i in intents.intents)
    alarm = next(d for d in intents.domains if d.name == "alarm")
    assert alarm.intent_count == 3


async def test_batch_keeps_order_and_stream_echoes_request_ids(served: Running) -> None:
    texts = ["set an alarm for six", "is it going to rain", "tell me a joke"] * 5
    batch = await served.stub.ClassifyBatch(pb.ClassifyBatchRequest(texts=texts))
    assert [c.intent for c in batch.classifications[:3]] == [
        "alarm/set",
        "weather/query",
        "general/joke",
    ]
    assert len(batch.classifications) == 15

    async def requests() -> AsyncIterator[pb.ClassifyStreamRequest]:
        for i, text in enumerate(texts):
            yield pb.ClassifyStreamRequest(request_id=f"r-{i}", text=text)

    replies = [r async for r in served.stub.ClassifyStream(requests())]
    assert [r.request_id for r in replies] == [f"r-{i}" for i in range(15)]
    assert [r.classification.intent for r in replies] == [c.intent for c in batch.classifications]


async def test_threshold_override_gives_oos_with_the_best_guess_first(served: Running) -> None:
    text = "wake me up at seven"
    normal = (await served.stub.Classify(pb.ClassifyRequest(text=text))).classification
    strict = (
        await served.stub.Classify(
            pb.ClassifyRequest(
                text=text,
                options=pb.ClassifyOptions(confidence_threshold=1.0, top_k=5, include_debug=True),
            )
        )
    ).classification
    assert strict.out_of_scope
    assert strict.intent == "oos"
    assert strict.alternatives[0].intent == normal.intent == "alarm/set"
    assert len(strict.alternatives) == 5
    assert strict.confidence == pytest.approx(normal.confidence, abs=1e-5)
    assert strict.debug.confidence_threshold == pytest.approx(1.0)
    assert strict.debug.backend == pb.BACKEND_TFIDF


async def test_bad_requests_name_every_bad_field(served: Running) -> None:
    calls: list[tuple[Awaitable[Any], list[str]]] = [
        (
            served.stub.Classify(
                pb.ClassifyRequest(
                    text="  ",
                    session_id="bad session!",
                    options=pb.ClassifyOptions(top_k=21, confidence_threshold=1.5),
                )
            ),
            ["text", "session_id", "options.confidence_threshold", "options.top_k"],
        ),
        (served.stub.Classify(pb.ClassifyRequest(text="x" * 5000)), ["text"]),
        (served.stub.ClassifyBatch(pb.ClassifyBatchRequest()), ["texts"]),
        (served.stub.ClassifyBatch(pb.ClassifyBatchRequest(texts=["ok", ""])), ["texts[1]"]),
        (
            served.stub.AddExamples(
                pb.AddExamplesRequest(
                    examples=[pb.Example(text="hi", intent="Bad Intent"), pb.Example(intent="a")]
                )
            ),
            ["examples[0].intent", "examples[1].text"],
        ),
        (served.stub.AddExamples(pb.AddExamplesRequest()), ["examples"]),
    ]
    for call, fields in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_fields(info.value) == fields

    async def bad_stream() -> AsyncIterator[pb.ClassifyStreamRequest]:
        yield pb.ClassifyStreamRequest(request_id="ok", text="set an alarm")
        yield pb.ClassifyStreamRequest(request_id="", text="")

    stream = served.stub.ClassifyStream(bad_stream())
    first = await stream.read()
    assert isinstance(first, pb.ClassifyStreamResponse)
    assert first.request_id == "ok"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(info.value) == ["request_id", "text"]
    info_reply = await served.stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info_reply.runtime_example_count == 0  # nothing half-added


async def test_domain_metrics_move(served: Running) -> None:
    registry = served.server.runtime.metrics
    before = (
        registry.get_sample_value("switchboard_classification_requests_total", {"l1": "weather"})
        or 0.0
    )
    await served.stub.ClassifyBatch(
        pb.ClassifyBatchRequest(texts=["will it snow tomorrow", "weather in paris today"])
    )
    await served.stub.Classify(
        pb.ClassifyRequest(
            text="will it snow", options=pb.ClassifyOptions(confidence_threshold=1.0)
        )
    )
    after = registry.get_sample_value(
        "switchboard_classification_requests_total", {"l1": "weather"}
    )
    assert after == before + 2
    assert registry.get_sample_value("switchboard_classification_out_of_scope_total") == 1
    assert (
        registry.get_sample_value("switchboard_classification_requests_total", {"l1": "oos"}) == 1
    )
    assert registry.get_sample_value("switchboard_classification_confidence_count") == 3
    info = await served.stub.GetModelInfo(pb.GetModelInfoRequest())
    assert (
        registry.get_sample_value(
            "switchboard_classification_model_info",
            {"version": info.model_version, "backend": "tfidf"},
        )
        == 1
    )
