"""A small ServiceModule for testing the shared server scaffolding.

It serves the real ClassificationService contract with scripted behaviour keyed by
the request text, so tests can drive slow calls, domain errors and crashes without
depending on the real classifier.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server import errors
from switchboard_server.validation import Violations

SERVICE = "switchboard.classification.v1.ClassificationService"


class ScriptedServicer(pb_grpc.ClassificationServiceServicer):
    def __init__(self) -> None:
        self.started_calls = 0
        self.call_started = asyncio.Event()

    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClassifyResponse:
        self.started_calls += 1
        self.call_started.set()
        v = Violations()
        text = v.text("text", request.text, max_bytes=64)
        v.session_id("session_id", request.session_id, required=False)
        v.int_range("options.top_k", request.options.top_k, 0, 20)
        v.raise_if_any()
        if text.startswith("sleep:"):
            await asyncio.sleep(float(text.removeprefix("sleep:")))
        elif text == "unavailable":
            raise errors.Unavailable("model not loaded", reason=errors.ErrorReason.MODEL_NOT_READY)
        elif text == "boom":
            raise RuntimeError("secret internal detail")
        return pb.ClassifyResponse(
            classification=pb.Classification(intent="test/echo", confidence=1.0)
        )


class ScriptedModule:
    """ServiceModule whose readiness is controlled by the test through ``ready``."""

    def __init__(self) -> None:
        self.servicer = ScriptedServicer()  # type: ignore[abstract]  # serves Classify only
        self.ready = asyncio.Event()
        self.stopped = False

    @property
    def service_names(self) -> tuple[str, ...]:
        return (SERVICE,)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ClassificationServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        await self.ready.wait()

    async def stop(self) -> None:
        self.stopped = True
