"""Every write of the typed client carries a request_id: fresh per call, or the given one,
in the body and in the x-switchboard-request-id header (what lets the mesh resend it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as orch_grpc
from switchboard_client import (
    ClassificationClient,
    ConnectConfig,
    ContextClient,
    OrchestrationClient,
)
from switchboard_client.cli import build_parser
from switchboard_server.request_keys import header_request_id


class Recorder(
    ctx_grpc.ContextServiceServicer,
    cls_grpc.ClassificationServiceServicer,
    orch_grpc.OrchestrationServiceServicer,
):
    def __init__(self) -> None:
        self.ids: list[tuple[str, str]] = []
        self.headers: list[str | None] = []

    def _record(self, kind: str, request: Any, context: Any) -> None:
        self.ids.append((kind, request.request_id))
        self.headers.append(header_request_id(context))

    async def AppendMemory(self, request: Any, context: Any) -> ctx_pb.AppendMemoryResponse:
        self._record("append", request, context)
        return ctx_pb.AppendMemoryResponse()

    async def ClearMemory(self, request: Any, context: Any) -> ctx_pb.ClearMemoryResponse:
        self._record("clear", request, context)
        return ctx_pb.ClearMemoryResponse()

    async def IngestDocuments(self, request: Any, context: Any) -> ctx_pb.IngestDocumentsResponse:
        self._record("ingest", request, context)
        return ctx_pb.IngestDocumentsResponse()

    async def DeleteDocuments(self, request: Any, context: Any) -> ctx_pb.DeleteDocumentsResponse:
        self._record("delete", request, context)
        return ctx_pb.DeleteDocumentsResponse()

    async def AddExamples(self, request: Any, context: Any) -> cls_pb.AddExamplesResponse:
        self._record("examples", request, context)
        return cls_pb.AddExamplesResponse()

    async def Chat(self, request: Any, context: Any) -> orch_pb.ChatResponse:
        self._record("chat", request, context)
        return orch_pb.ChatResponse()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, ConnectConfig]]:
    servicer = Recorder()  # type: ignore[abstract]  # serves the write methods only
    server = grpc.aio.server()
    ctx_grpc.add_ContextServiceServicer_to_server(servicer, server)
    cls_grpc.add_ClassificationServiceServicer_to_server(servicer, server)
    orch_grpc.add_OrchestrationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, ConnectConfig(f"127.0.0.1:{port}")
    finally:
        await server.stop(0)


async def test_each_write_gets_a_fresh_uuid_unless_one_is_given(
    recorder: tuple[Recorder, ConnectConfig],
) -> None:
    servicer, config = recorder
    entry = ctx_pb.MemoryEntry(type=ctx_pb.MEMORY_TYPE_WORKING, content="x")
    given = str(uuid.uuid4())
    async with (
        ContextClient(config) as ctx,
        ClassificationClient(config) as cls,
        OrchestrationClient(config) as orch,
    ):
        await ctx.append_memory("s", [entry])
        await ctx.append_memory("s", [entry])
        await ctx.append_memory("s", [entry], request_id=given)
        await ctx.clear_memory("s")
        await ctx.ingest_documents([("d", "t", "text")])
        await ctx.delete_documents(["d"])
        await cls.add_examples([("hi", "greet/hello")])
        await orch.chat("hi", session_id="s")
    kinds = [kind for kind, _ in servicer.ids]
    assert kinds == ["append", "append", "append", "clear", "ingest", "delete", "examples", "chat"]
    ids = [request_id for _, request_id in servicer.ids]
    assert ids[2] == given
    generated = ids[:2] + ids[3:]
    assert all(str(uuid.UUID(i)) == i for i in generated)
    assert len(set(generated)) == len(generated)  # one per logical call
    assert servicer.headers == ids  # the header repeats the body's key on every write


def test_the_chat_command_takes_a_request_id() -> None:
    args = build_parser().parse_args(["chat", "-m", "hi", "--request-id", "abc"])
    assert args.request_id == "abc"
