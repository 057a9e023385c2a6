"""The single-process deployment: one server serves all three services and the chat
pipeline calls classification and context in process (``peers = "in_process"``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client import ClassificationClient, ConnectConfig, OrchestrationClient
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.testing import RunningServices, start_services, with_parts

SERVICES = (
    "switchboard.classification.v1.ClassificationService",
    "switchboard.context.v1.ContextService",
    "switchboard.orchestration.v1.OrchestrationService",
)


@pytest.fixture
async def single(tmp_path: Path, model_cache: Path) -> AsyncIterator[RunningServices]:
    settings = with_parts(
        Settings(core=CoreSettings(data_dir=tmp_path, grace_period_s=0.0)),
        orchestration={"peers": "in_process"},
    )
    async with start_services(
        tmp_path, {ServiceName.ORCHESTRATION}, settings=settings, model_cache=model_cache
    ) as running:
        yield running


async def test_one_server_serves_and_reports_health_of_all_three(single: RunningServices) -> None:
    channel = single.channel(ServiceName.ORCHESTRATION)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", *SERVICES):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    target = single.target(ServiceName.ORCHESTRATION)
    async with ClassificationClient(ConnectConfig(target)) as classification:
        verdict = await classification.classify("set an alarm for six tomorrow morning")
    assert verdict.intent.startswith("alarm/")


async def test_chat_turns_classify_cite_and_remember_in_process(single: RunningServices) -> None:
    target = single.target(ServiceName.ORCHESTRATION)
    async with OrchestrationClient(ConnectConfig(target)) as orchestration:
        alarm = await orchestration.chat("wake me up at seven am tomorrow", session_id="one-1")
        question = await orchestration.chat(
            "What is Switchboard and how does a chat message flow through it?",
            session_id="one-1",
        )
        recall = await orchestration.chat("what did I ask you to wake me at?", session_id="one-1")
    assert alarm.intent.intent.startswith("alarm/")
    cited = [s for s in question.sources if s.cited]
    assert [s.kind for s in cited] == [pb.SOURCE_KIND_KNOWLEDGE]
    assert f"[{cited[0].id}]" in question.reply
    remembered = [s.content for s in recall.sources if s.kind == pb.SOURCE_KIND_MEMORY]
    assert any("seven am" in content for content in remembered)
    assert [r.degraded for r in (alarm, question, recall)] == [[], [], []]
    assert recall.turn_index == 2
