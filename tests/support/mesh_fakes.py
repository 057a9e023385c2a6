"""Test-only service modules for fault injection behind real Envoy sidecars.

Each fake serves the real contract; its ``mode`` (set by the test at run time) makes
handlers answer, fail with ``errors.Unavailable`` or sleep, and it counts calls so a
test can tell which replica Envoy actually sent traffic to.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_server import errors

CLASSIFICATION = "switchboard.classification.v1.ClassificationService"
CONTEXT = "switchboard.context.v1.ContextService"


class FaultState:
    """Mode and call counts of one fake replica."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | unavailable | slow
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
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)


class FakeClassification(cls_grpc.ClassificationServiceServicer):
    def __init__(self, state: FaultState) -> None:
        self.state = state

    async def Classify(
        self, request: cls_pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cls_pb.ClassifyResponse:
        await self.state.act("Classify", context)
        return cls_pb.ClassifyResponse(
            classification=cls_pb.Classification(intent="test/echo", confidence=1.0)
        )


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
            fake = FakeContext(self.state)  # type: ignore[abstract]  # GetContext, AppendMemory only
            ctx_grpc.add_ContextServiceServicer_to_server(fake, server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
