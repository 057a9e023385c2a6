"""The pipeline's domain spans: one per stage, under the caller's span, no message text."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard_server.orchestration.composer import RuleComposer, default_registry
from switchboard_server.orchestration.domain import ChatPipeline, PipelineConfig
from switchboard_server.orchestration.values import ChatOptions
from tests.support.orchestration import FakeClassifier, FakeContext, MemoryLog

MESSAGE = "wake me up at 7 tomorrow"


def traced_pipeline(
    context: FakeContext,
) -> tuple[ChatPipeline, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rules = RuleComposer(default_registry("general/fallback"), min_relevance=0.05, alternatives=3)
    pipeline = ChatPipeline(
        FakeClassifier(),
        context,
        rules,
        MemoryLog(),
        PipelineConfig(),
        fallback_composer=rules,
        tracer_provider=provider,
    )
    return pipeline, exporter, provider


async def test_each_stage_is_a_child_span_of_the_turn_with_bounded_attributes() -> None:
    pipeline, exporter, provider = traced_pipeline(FakeContext())
    with provider.get_tracer("test").start_as_current_span("Chat") as root:
        await pipeline.run(MESSAGE, "s1", ChatOptions(), correlation_id="c")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"Chat", "chat.classify", "chat.retrieve", "chat.compose", "chat.remember"}
    root_id = root.get_span_context().span_id
    for name in ("chat.classify", "chat.retrieve", "chat.compose", "chat.remember"):
        parent = spans[name].parent
        assert parent is not None
        assert parent.span_id == root_id
    classify = spans["chat.classify"].attributes or {}
    assert classify["intent.l1"] == "alarm"
    assert classify["intent.confidence_bucket"] in {f"0.{i}-{(i + 1) / 10:.1f}" for i in range(10)}
    turn = spans["Chat"].attributes or {}
    assert turn["chat.degraded"] == ()
    every_value = [str(v) for s in spans.values() for v in (s.attributes or {}).values()]
    assert not any("wake me up" in value for value in every_value)


async def test_a_failed_dependency_marks_its_span_and_the_turn() -> None:
    pipeline, exporter, provider = traced_pipeline(FakeContext(fail_get="UNAVAILABLE"))
    with provider.get_tracer("test").start_as_current_span("Chat"):
        await pipeline.run(MESSAGE, "s1", ChatOptions(), correlation_id="c")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    retrieve = spans["chat.retrieve"].attributes or {}
    assert retrieve["degraded"] is True
    assert retrieve["degraded.reason"] == "UNAVAILABLE"
    assert (spans["Chat"].attributes or {})["chat.degraded"] == ("CONTEXT",)
