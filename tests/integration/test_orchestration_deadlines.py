"""Deadlines and cancellation cross the orchestration service into its peers.

Classification is replaced by a slow fake that records whether its handler was
cancelled; context and orchestration are the real services on real ports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_client import ConnectConfig, DeadlineExceeded, OrchestrationClient
from switchboard_server.config import ServiceName
from switchboard_server.testing import RunningServices, start_services


class SlowClassifier(cls_grpc.ClassificationServiceServicer):
    """Answers ``alarm/set`` after ``delay`` seconds; records start and cancellation."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.active = 0
        self.completed = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.correlation_ids: list[str] = []
        self.time_remaining: list[float | None] = []

    async def Classify(
        self,
        request: cls_pb.ClassifyRequest,
        context: grpc.aio.ServicerContext[cls_pb.ClassifyRequest, cls_pb.ClassifyResponse],
    ) -> cls_pb.ClassifyResponse:
        self.time_remaining.append(context.time_remaining())
        self.correlation_ids.extend(
            str(v) for k, v in context.invocation_metadata() or () if k == "x-correlation-id"
        )
        self.started.set()
        self.active += 1
        self.idle.clear()
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.active -= 1
            if not self.active:
                self.idle.set()
        self.completed += 1
        return cls_pb.ClassifyResponse(
            classification=cls_pb.Classification(
                intent="alarm/set",
                confidence=0.9,
                hierarchy=cls_pb.IntentHierarchy(l1="alarm", l2="set"),
            )
        )


async def assert_no_work_left(downstream: SlowClassifier) -> None:
    """Within 5 s, no handler is running downstream and none ran to completion."""
    await asyncio.wait_for(downstream.idle.wait(), 5.0)
    assert downstream.active == 0
    assert downstream.completed == 0
    if downstream.started.is_set():
        assert downstream.cancelled.is_set()


class FakeClassificationModule:
    def __init__(self, servicer: SlowClassifier) -> None:
        self.servicer = servicer

    @property
    def service_names(self) -> tuple[str, ...]:
        return ("switchboard.classification.v1.ClassificationService",)

    def register(self, server: grpc.aio.Server) -> None:
        cls_grpc.add_ClassificationServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[tuple[RunningServices, SlowClassifier]]:
    servicer = SlowClassifier(delay=30.0)  # type: ignore[abstract]  # serves Classify only
    modules = {ServiceName.CLASSIFICATION: FakeClassificationModule(servicer)}
    async with start_services(tmp_path, modules=modules) as running:
        yield running, servicer


async def test_50ms_deadline_fails_fast_and_cancels_downstream_work(
    slow: tuple[RunningServices, SlowClassifier],
) -> None:
    running, downstream = slow
    stub = pb_grpc.OrchestrationServiceStub(running.channel(ServiceName.ORCHESTRATION))
    loop = asyncio.get_running_loop()
    begun = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Chat(
            pb.ChatRequest(message="wake me up at seven", session_id="deadline-1"),
            timeout=0.05,
            metadata=(("x-correlation-id", "corr-deadline-1"),),
        )
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert loop.time() - begun < 5.0  # not the 30 s the fake would take
    await assert_no_work_left(downstream)
    if downstream.time_remaining:  # on a loaded box the call may never have got that far
        remaining = downstream.time_remaining[0]
        assert remaining is not None
        assert remaining <= 0.05  # the peer got a deadline derived from ours, not a fresh one
        assert downstream.correlation_ids[:1] == ["corr-deadline-1"]


async def test_typed_client_maps_deadline_exceeded(
    slow: tuple[RunningServices, SlowClassifier],
) -> None:
    running, downstream = slow
    config = ConnectConfig(running.target(ServiceName.ORCHESTRATION), timeout_s=0.05)
    async with OrchestrationClient(config) as client:
        with pytest.raises(DeadlineExceeded):
            await client.chat("wake me up at seven", session_id="deadline-2")
    await assert_no_work_left(downstream)


async def test_cancelling_the_stream_cancels_the_downstream_call(
    slow: tuple[RunningServices, SlowClassifier],
) -> None:
    running, downstream = slow
    stub = pb_grpc.OrchestrationServiceStub(running.channel(ServiceName.ORCHESTRATION))
    call = stub.ChatStream(
        pb.ChatStreamRequest(message="wake me up at seven", session_id="stream-cancel"),
        timeout=30,
    )
    first = await call.read()
    assert isinstance(first, pb.ChatStreamResponse)
    assert first.stage.status == pb.STAGE_STATUS_STARTED
    await asyncio.wait_for(downstream.started.wait(), 5.0)
    call.cancel()
    await asyncio.wait_for(downstream.cancelled.wait(), 5.0)
    assert call.cancelled()


async def test_own_stage_timeout_degrades_instead_of_failing(tmp_path: Path) -> None:
    servicer = SlowClassifier(delay=30.0)  # type: ignore[abstract]  # serves Classify only
    modules = {ServiceName.CLASSIFICATION: FakeClassificationModule(servicer)}
    from switchboard_server.config import CoreSettings, Settings
    from switchboard_server.orchestration.settings import OrchestrationSettings

    settings = Settings(
        core=CoreSettings(data_dir=tmp_path, grace_period_s=0.0),
        orchestration=OrchestrationSettings(classify_timeout_ms=100),
    )
    async with start_services(tmp_path, settings=settings, modules=modules) as running:
        stub = pb_grpc.OrchestrationServiceStub(running.channel(ServiceName.ORCHESTRATION))
        response = await stub.Chat(
            pb.ChatRequest(message="wake me up at seven", session_id="slow-1"), timeout=10
        )
        assert [(d.dependency, d.reason) for d in response.degraded] == [
            (pb.DEPENDENCY_CLASSIFICATION, "DEADLINE_EXCEEDED")
        ]
        assert response.intent.fallback
        await asyncio.wait_for(servicer.cancelled.wait(), 5.0)
