"""Test-only service modules for fault injection behind real Envoy sidecars.

Each fake serves the real contract; its ``mode`` (set by the test at run time) makes
handlers answer, fail with ``errors.Unavailable``, crash (INTERNAL), abort with
``code``, answer the largest error the server can send, or sleep, and it counts calls
so a test can tell which replica Envoy actually sent traffic to.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_server import errors
from switchboard_server.validation import Violations

CLASSIFICATION = "switchboard.classification.v1.ClassificationService"
CONTEXT = "switchboard.context.v1.ContextService"
ECHO = cls_pb.Classification(intent="test/echo", confidence=1.0)


class FaultState:
    """Mode and call counts of one fake replica."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | unavailable | crash | code | huge_error | slow
        self.code = grpc.StatusCode.NOT_FOUND  # what mode "code" aborts with
        self.slow_s = 0.5
        self.calls: Counter[str] = Counter()
        self.appended: Counter[str] = Counter()  # AppendMemory calls served, by session
        self.last_call_at = 0.0  # time.monotonic() of the latest call
        self.last_metadata: dict[str, str] = {}

    async def act(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls[method] += 1
        self.last_metadata = {
            k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)
        }
        self.last_call_at = time.monotonic()
        if self.mode == "unavailable":
            raise errors.Unavailable("injected fault")
        if self.mode == "crash":
            raise RuntimeError("injected crash")
        if self.mode == "code":
            await context.abort(self.code, "injected status")
        if self.mode == "huge_error":
            raise errors.InvalidArgument(
                [errors.FieldViolation("f" * 1000 + str(i), "d%é" * 1000) for i in range(1000)]
            )
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)


class FakeClassification(cls_grpc.ClassificationServiceServicer):
    def __init__(self, state: FaultState) -> None:
        self.state = state

    async def Classify(
        self, request: cls_pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cls_pb.ClassifyResponse:
        await self.state.act("Classify", context)
        return cls_pb.ClassifyResponse(classification=ECHO)

    async def ClassifyBatch(
        self, request: cls_pb.ClassifyBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cls_pb.ClassifyBatchResponse:
        await self.state.act("ClassifyBatch", context)
        v = Violations()
        for i, text in enumerate(request.texts):
            v.text(f"texts[{i}]", text, max_bytes=4096)
        v.raise_if_any()
        return cls_pb.ClassifyBatchResponse(classifications=[ECHO for _ in request.texts])

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[cls_pb.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[cls_pb.ClassifyStreamResponse]:
        async for request in request_iterator:
            await self.state.act("ClassifyStream", context)
            yield cls_pb.ClassifyStreamResponse(request_id=request.request_id, classification=ECHO)


class FakeContext(ctx_grpc.ContextServiceServicer):
    def __init__(self, state: FaultState) -> None:
        self.state = state

    async def GetContext(
        self, request: ctx_pb.GetContextRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ctx_pb.GetContextResponse:
        await self.state.act("GetContext", context)
        return ctx_pb.GetContextResponse()

    async def AppendMemory(
        self, request: ctx_pb.AppendMemoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ctx_pb.AppendMemoryResponse:
        await self.state.act("AppendMemory", context)
        self.state.appended[request.session_id] += 1
        if request.session_id.startswith("sleep:"):  # a slow write, for drain tests
            await asyncio.sleep(float(request.session_id.removeprefix("sleep:")))
        return ctx_pb.AppendMemoryResponse(entry_ids=["e1"])

    async def ClearMemory(
        self, request: ctx_pb.ClearMemoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ctx_pb.ClearMemoryResponse:
        await self.state.act("ClearMemory", context)
        return ctx_pb.ClearMemoryResponse(deleted_count=1)


class FakeModule:
    """A ServiceModule serving one fake servicer; ready at once."""

    def __init__(self, service: str) -> None:
        self.state = FaultState()
        self.service = service

    @property
    def service_names(self) -> tuple[str, ...]:
        return (self.service,)

    def register(self, server: grpc.aio.Server) -> None:
        if self.service == CLASSIFICATION:
            cls_grpc.add_ClassificationServiceServicer_to_server(
                FakeClassification(self.state),  # type: ignore[abstract]  # serves Classify only
                server,
            )
        else:
            fake = FakeContext(self.state)  # type: ignore[abstract]  # GetContext, AppendMemory, ClearMemory
            ctx_grpc.add_ContextServiceServicer_to_server(fake, server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
