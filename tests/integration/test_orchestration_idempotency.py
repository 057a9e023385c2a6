"""Chat and ChatStream with a request_id across the real services (AIP-155).

A repeat answers with the committed turn and writes nothing; a reused key is
refused; concurrent duplicates make one turn; a Chat that failed on its deadline
after its turn was committed, retried with its key, gets that turn, not a second.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.config import ServiceName
from switchboard_server.testing import RunningServices, start_services
from tests.support.rich_status import error_details


def stub(running: RunningServices) -> pb_grpc.OrchestrationServiceAsyncStub:
    return pb_grpc.OrchestrationServiceStub(running.channel(ServiceName.ORCHESTRATION))


def chat(message: str, session: str, request_id: str) -> pb.ChatRequest:
    return pb.ChatRequest(message=message, session_id=session, request_id=request_id)


async def turns(running: RunningServices, session: str) -> list[pb.Turn]:
    page = await stub(running).GetConversation(
        pb.GetConversationRequest(session_id=session, page_size=100)
    )
    return list(page.turns)


def same_answer(a: pb.ChatResponse, b: pb.ChatResponse) -> bool:
    return (a.reply, a.intent, a.turn_index, list(a.sources), list(a.degraded)) == (
        b.reply, b.intent, b.turn_index, list(b.sources), list(b.degraded),
    )  # fmt: skip


async def test_chat_repeated_with_its_key_makes_one_turn(services: RunningServices) -> None:
    request = chat("wake me up at seven tomorrow", "idem-1", str(uuid.uuid4()))
    first = await stub(services).Chat(request)
    again = await stub(services).Chat(request)
    assert same_answer(again, first)
    assert [t.user_message for t in await turns(services, "idem-1")] == [request.message]
    memory = ctx_grpc.ContextServiceStub(services.channel(ServiceName.CONTEXT))
    stats = (
        await memory.GetMemoryStats(ctx_pb.GetMemoryStatsRequest(session_id="idem-1"))
    ).memory_stats
    assert (stats.working_count, stats.episodic_count) == (2, 1)  # one turn's memory
    registry = services.servers[ServiceName.ORCHESTRATION].runtime.metrics
    counted = sum(
        registry.get_sample_value("switchboard_chat_turns_total", {"degraded": d}) or 0.0
        for d in ("true", "false")
    )
    assert counted == 1  # the replay is not a second turn in the metrics either
    # a new key is a new turn
    other = await stub(services).Chat(chat(request.message, "idem-1", str(uuid.uuid4())))
    assert other.turn_index == first.turn_index + 1


async def test_chat_stream_replays_the_committed_turn(services: RunningServices) -> None:
    request = pb.ChatStreamRequest(
        message="what is the weather in paris", session_id="idem-s", request_id=str(uuid.uuid4())
    )
    summaries = []
    for _ in range(2):
        events = [e async for e in stub(services).ChatStream(request)]
        assert events[-1].HasField("summary")
        reply = "".join(e.reply_chunk.text for e in events if e.HasField("reply_chunk"))
        assert reply == events[-1].summary.reply
        summaries.append(events[-1].summary)
    assert same_answer(summaries[0], summaries[1])
    assert len(await turns(services, "idem-s")) == 1


async def test_a_key_reused_with_another_message_is_refused(services: RunningServices) -> None:
    request_id = str(uuid.uuid4())
    await stub(services).Chat(chat("set an alarm for six", "idem-r", request_id))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub(services).Chat(chat("play some jazz", "idem-r", request_id))
    assert failed.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info, _ = error_details(failed.value)
    assert (info.reason, info.metadata["request_id"]) == ("REQUEST_ID_REUSED", request_id)
    assert len(await turns(services, "idem-r")) == 1


async def test_a_request_id_that_is_not_a_uuid_is_invalid(services: RunningServices) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub(services).Chat(chat("hello", "idem-bad", "42"))
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(failed.value)[1] == ["request_id"]


async def test_concurrent_duplicates_make_one_turn(services: RunningServices) -> None:
    request = chat("remind me to call mum", "idem-c", str(uuid.uuid4()))
    replies = await asyncio.gather(*(stub(services).Chat(request) for _ in range(10)))
    assert all(same_answer(r, replies[0]) for r in replies)
    assert len(await turns(services, "idem-c")) == 1


class SlowMemory(ctx_grpc.ContextServiceServicer):
    """A context service whose first AppendMemory outlasts the caller's deadline."""

    def __init__(self, first_delay: float) -> None:
        self.first_delay = first_delay
        self.request_ids: list[str] = []
        self.landed = 0

    async def GetContext(self, request: Any, context: Any) -> ctx_pb.GetContextResponse:
        return ctx_pb.GetContextResponse()

    async def AppendMemory(self, request: Any, context: Any) -> ctx_pb.AppendMemoryResponse:
        self.request_ids.append(request.request_id)
        if len(self.request_ids) == 1:
            await asyncio.sleep(self.first_delay)
        self.landed += 1
        return ctx_pb.AppendMemoryResponse()


class SlowMemoryModule:
    def __init__(self, servicer: SlowMemory) -> None:
        self.servicer = servicer

    @property
    def service_names(self) -> tuple[str, ...]:
        return ("switchboard.context.v1.ContextService",)

    def register(self, server: grpc.aio.Server) -> None:
        ctx_grpc.add_ContextServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_a_deadline_exceeded_chat_retried_with_its_key_yields_one_turn(
    tmp_path: Path, model_cache: Path
) -> None:
    memory = SlowMemory(first_delay=5.0)  # type: ignore[abstract]  # serves AppendMemory only
    modules = {ServiceName.CONTEXT: SlowMemoryModule(memory)}
    async with start_services(tmp_path, modules=modules, model_cache=model_cache) as running:
        request = chat("wake me up at seven", "idem-d", str(uuid.uuid4()))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub(running).Chat(request, timeout=1.5)  # the turn commits, memory hangs
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(await turns(running, "idem-d")) == 1  # committed although it failed

        retried = await stub(running).Chat(request, timeout=10)
        assert retried.turn_index == 0
        history = await turns(running, "idem-d")
        assert [(t.index, t.reply) for t in history] == [(0, retried.reply)]
        # the retry completed the memory write the deadline cut, under the same id
        assert len(memory.request_ids) == 2
        assert len(set(memory.request_ids)) == 1
        assert memory.request_ids[0] not in ("", request.request_id)
        assert memory.landed == 1


async def test_the_typed_client_sends_a_fresh_key_per_call_and_reuses_a_given_one(
    services: RunningServices,
) -> None:
    from switchboard_client import ConnectConfig, OrchestrationClient

    config = ConnectConfig(services.target(ServiceName.ORCHESTRATION))
    async with OrchestrationClient(config) as client:
        first = await client.chat("wake me up at six", session_id="idem-client")
        second = await client.chat("wake me up at six", session_id="idem-client")
        assert (first.turn_index, second.turn_index) == (0, 1)  # two logical calls
        request_id = str(uuid.uuid4())
        kept = await client.chat("and at seven", session_id="idem-client", request_id=request_id)
        retried = await client.chat("and at seven", session_id="idem-client", request_id=request_id)
        assert kept.turn_index == retried.turn_index == 2
    assert len(await turns(services, "idem-client")) == 3
