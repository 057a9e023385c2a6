"""In-process peers: a servicer's failure reaches the pipeline as the status it would
have had over gRPC, and the call's deadline is enforced."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard_server import errors
from switchboard_server.orchestration.in_process import (
    InProcessStub,
    in_process_classifier,
    in_process_context,
)
from switchboard_server.orchestration.ports import DependencyFailed
from switchboard_server.orchestration.values import MemoryEntry
from switchboard_server.request_keys import HasMetadata, header_request_id


class Servicer:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    async def Classify(self, request: pb.ClassifyRequest, context: None) -> pb.ClassifyResponse:
        if self.behaviour == "unavailable":
            raise errors.Unavailable("model loading", reason=errors.ErrorReason.MODEL_NOT_READY)
        if self.behaviour == "slow":
            await asyncio.sleep(5)
        if self.behaviour == "bug":
            raise KeyError("oops")
        return pb.ClassifyResponse(
            classification=pb.Classification(intent="alarm/set", confidence=0.9)
        )


async def test_a_reply_is_translated_like_one_from_the_wire() -> None:
    intent = await in_process_classifier(Servicer("ok")).classify(
        "wake me", "s-1", threshold=None, top_k=3, budget_s=1.0
    )
    assert (intent.intent, intent.l1) == ("alarm/set", "alarm")
    assert intent.confidence == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("unavailable", "UNAVAILABLE"), ("slow", "DEADLINE_EXCEEDED"), ("bug", "INTERNAL")],
)
async def test_failures_carry_the_canonical_code(behaviour: str, reason: str) -> None:
    stub = InProcessStub(Servicer(behaviour))
    with pytest.raises(DependencyFailed) as failed:
        await stub.Classify(pb.ClassifyRequest(text="x"), timeout=0.05)
    assert failed.value.reason == reason


class Memory:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def AppendMemory(
        self, request: ctx_pb.AppendMemoryRequest, context: HasMetadata
    ) -> ctx_pb.AppendMemoryResponse:
        self.seen.append((request.request_id, header_request_id(context)))
        return ctx_pb.AppendMemoryResponse()


async def test_a_keyed_memory_write_sends_its_key_as_the_header_too() -> None:
    """The header lets the mesh resend the write; without a key there is no header."""
    memory = Memory()
    context = in_process_context(memory)
    entry = MemoryEntry(kind="working", content="hi")
    key = str(uuid.uuid4())
    await context.append_memory("s-1", [entry], budget_s=1.0, request_id=key)
    await context.append_memory("s-1", [entry], budget_s=1.0)
    assert memory.seen == [(key, key), ("", None)]
