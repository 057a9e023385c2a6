"""Chat across the three real services on real ports (in-process, no Envoy).

Each test gets fresh services (``services`` fixture); the classifier trains once per
session thanks to the shared model cache and is loaded from it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_client import (
    ClassificationClient,
    ConnectConfig,
    InvalidArgument,
    OrchestrationClient,
)
from switchboard_server.config import ServiceName
from switchboard_server.testing import RunningServices


@pytest.fixture
def mesh(services: RunningServices) -> RunningServices:
    return services


def client(mesh: RunningServices) -> OrchestrationClient:
    return OrchestrationClient(ConnectConfig(mesh.target(ServiceName.ORCHESTRATION)))


async def test_hwu64_style_message_gets_an_intent_of_the_taxonomy(mesh: RunningServices) -> None:
    async with ClassificationClient(ConnectConfig(mesh.target(ServiceName.CLASSIFICATION))) as c:
        taxonomy = {i.path for i in (await c.list_intents()).intents}
    async with client(mesh) as orchestration:
        response = await orchestration.chat("wake me up at seven am tomorrow", session_id="hwu-1")
    assert response.intent.intent in taxonomy
    assert response.intent.intent.startswith("alarm/")
    assert response.intent.l1 == "alarm"
    assert not response.intent.out_of_scope
    assert not response.intent.fallback
    assert list(response.degraded) == []
    stages = [t.stage for t in response.timings]
    assert sorted(stages[:2]) == [pb.STAGE_CLASSIFY, pb.STAGE_RETRIEVE]  # concurrent
    assert stages[2:] == [pb.STAGE_COMPOSE, pb.STAGE_REMEMBER]


async def test_question_about_switchboard_cites_a_knowledge_passage(
    mesh: RunningServices,
) -> None:
    async with client(mesh) as orchestration:
        response = await orchestration.chat(
            "What is Switchboard and how does a chat message flow through it?",
            session_id="kb-1",
            correlation_id="corr-kb-1",
        )
    cited = [s for s in response.sources if s.cited]
    assert len(cited) == 1
    assert cited[0].kind == pb.SOURCE_KIND_KNOWLEDGE
    assert f"[{cited[0].id}]" in response.reply
    assert response.correlation_id == "corr-kb-1"


async def test_next_turn_sees_the_previous_one_and_history_pages(mesh: RunningServices) -> None:
    async with client(mesh) as orchestration:
        first = await orchestration.chat("my favourite colour is turquoise", session_id="memory-1")
        second = await orchestration.chat("what is my favourite colour?", session_id="memory-1")
        assert (first.turn_index, second.turn_index) == (0, 1)
        memory = [s for s in second.sources if s.kind == pb.SOURCE_KIND_MEMORY]
        assert any("turquoise" in s.content for s in memory)

        page = await orchestration.get_conversation("memory-1", page_size=1)
        assert page.total_turns == 2
        assert [t.user_message for t in page.turns] == ["my favourite colour is turquoise"]
        rest = await orchestration.get_conversation(
            "memory-1", page_size=1, page_token=page.next_page_token
        )
        assert [t.index for t in rest.turns] == [1]
        assert rest.turns[0].reply == second.reply
        assert rest.turns[0].intent.intent == second.intent.intent
        assert rest.next_page_token == ""
        with pytest.raises(InvalidArgument) as foreign:
            await orchestration.get_conversation("memory-2", page_token=page.next_page_token)
        assert foreign.value.fields == ["page_token"]


async def test_bad_input_names_every_bad_field(mesh: RunningServices) -> None:
    async with client(mesh) as orchestration:
        with pytest.raises(InvalidArgument) as bad:
            await orchestration.chat("   ", session_id="not a valid id!", max_context_results=99)
    assert sorted(bad.value.fields) == ["message", "options.max_context_results", "session_id"]
    stub = pb_grpc.OrchestrationServiceStub(mesh.channel(ServiceName.ORCHESTRATION))
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.GetConversation(pb.GetConversationRequest(session_id="s", page_size=500))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_emits_stages_then_chunks_then_summary(mesh: RunningServices) -> None:
    async with client(mesh) as orchestration:
        events = [
            e
            async for e in orchestration.chat_stream("what is switchboard?", session_id="stream-1")
        ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "summary"
    first_chunk = kinds.index("reply_chunk")
    assert set(kinds[:first_chunk]) == {"stage"}
    assert set(kinds[first_chunk:-1]) == {"reply_chunk"}
    stages = [(e.stage.stage, e.stage.status) for e in events[:first_chunk]]
    for stage in (pb.STAGE_CLASSIFY, pb.STAGE_RETRIEVE, pb.STAGE_COMPOSE, pb.STAGE_REMEMBER):
        assert (stage, pb.STAGE_STATUS_STARTED) in stages
        assert (stage, pb.STAGE_STATUS_FINISHED) in stages
    chunks = [e.reply_chunk for e in events if e.WhichOneof("event") == "reply_chunk"]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert "".join(c.text for c in chunks) == events[-1].summary.reply


async def run_cli(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard_client.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_chat_and_history(mesh: RunningServices, tmp_path: Path) -> None:
    target = mesh.target(ServiceName.ORCHESTRATION)
    code, out, _ = await run_cli(
        "chat",
        "--target",
        target,
        "--session",
        "cli-1",
        "--message",
        "what is switchboard?",
        "--json",
    )
    assert code == 0
    response = json.loads(out)
    assert response["sessionId"] == "cli-1"
    assert any(s.get("cited") for s in response["sources"])
    code, out, _ = await run_cli(
        "chat",
        "--target",
        target,
        "--session",
        "cli-1",
        "-m",
        "set an alarm for 6am",
        "--verbose",
    )
    assert code == 0
    assert "intent: alarm/" in out
    assert "timings: " in out
    assert "classify=" in out
    code, out, _ = await run_cli("history", "--target", target, "--session", "cli-1", "--json")
    assert code == 0
    turns = json.loads(out)["turns"]
    assert [t["userMessage"] for t in turns] == ["what is switchboard?", "set an alarm for 6am"]
    code, _, err = await run_cli("chat", "--target", target, "--session", "bad id", "-m", "x")
    assert code == 1
    assert "session_id" in err
