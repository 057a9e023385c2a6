"""A stopped dependency degrades the turn; it never fails it (all three real services)."""

from __future__ import annotations

from pathlib import Path

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client import ConnectConfig, OrchestrationClient
from switchboard_server.config import ServiceName
from switchboard_server.testing import start_services


def degraded(response: pb.ChatResponse) -> list[tuple[int, str]]:
    return [(d.dependency, d.reason) for d in response.degraded]


async def test_classification_down_gives_fallback_intent_and_a_reply(
    tmp_path: Path, model_cache: Path
) -> None:
    async with start_services(tmp_path, model_cache=model_cache) as running:
        await running.stop(ServiceName.CLASSIFICATION)
        config = ConnectConfig(running.target(ServiceName.ORCHESTRATION), timeout_s=10)
        async with OrchestrationClient(config) as client:
            response = await client.chat("what is switchboard?", session_id="cls-down")
            history = await client.get_conversation("cls-down")
        metrics = running.servers[ServiceName.ORCHESTRATION].runtime.metrics
        moved = metrics.get_sample_value(
            "switchboard_chat_degradations_total",
            {"dependency": "classification", "reason": "UNAVAILABLE"},
        )
        turns = metrics.get_sample_value("switchboard_chat_turns_total", {"degraded": "true"})
    assert degraded(response) == [(pb.DEPENDENCY_CLASSIFICATION, "UNAVAILABLE")]
    assert response.intent.fallback
    assert response.intent.intent == "general/fallback"
    assert any(s.cited for s in response.sources)  # context still answered
    assert response.reply
    assert history.total_turns == 1
    assert moved == 1.0
    assert turns == 1.0


async def test_context_down_replies_without_context_and_flags_memory(
    tmp_path: Path, model_cache: Path
) -> None:
    async with start_services(tmp_path, model_cache=model_cache) as running:
        await running.stop(ServiceName.CONTEXT)
        config = ConnectConfig(running.target(ServiceName.ORCHESTRATION), timeout_s=10)
        async with OrchestrationClient(config) as client:
            response = await client.chat("set an alarm for 6 am", session_id="ctx-down")
            stream = [e async for e in client.chat_stream("set an alarm", session_id="ctx-down")]
    assert degraded(response) == [
        (pb.DEPENDENCY_CONTEXT, "UNAVAILABLE"),
        (pb.DEPENDENCY_MEMORY, "UNAVAILABLE"),
    ]
    assert list(response.sources) == []
    assert response.intent.intent.startswith("alarm/")
    assert response.reply
    failed = {
        e.stage.stage
        for e in stream
        if e.WhichOneof("event") == "stage" and e.stage.status == pb.STAGE_STATUS_FAILED
    }
    assert failed == {pb.STAGE_RETRIEVE, pb.STAGE_REMEMBER}
    assert stream[-1].summary.turn_index == 1
