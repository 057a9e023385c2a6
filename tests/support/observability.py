"""Test helpers for observability: a relay service module, a server runner, log capture.

``RelayModule`` serves the real ClassificationService contract:

* ``Classify``: empty text -> INVALID_ARGUMENT (field ``text``); ``"unavailable"`` ->
  UNAVAILABLE; ``"relay"`` -> calls ``Classify("ok")`` on the downstream target through
  a channel built with ``runtime.client_interceptors`` (spans, metrics, correlation);
  anything else -> OK.
* ``ClassifyStream``: echoes one response per request.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import grpc
import structlog

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server import errors
from switchboard_server.app import AppServer, create_server
from switchboard_server.config import ServiceName, Settings
from switchboard_server.observability.logging import configure_logging
from switchboard_server.service import Runtime
from switchboard_server.validation import Violations

SERVICE = "switchboard.classification.v1.ClassificationService"


class RelayServicer(pb_grpc.ClassificationServiceServicer):
    def __init__(self) -> None:
        self.downstream: pb_grpc.ClassificationServiceAsyncStub | None = None

    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClassifyResponse:
        v = Violations()
        text = v.text("text", request.text, max_bytes=64)
        v.raise_if_any()
        if text == "unavailable":
            raise errors.Unavailable("not ready", reason=errors.ErrorReason.NOT_READY)
        if text == "relay" and self.downstream is not None:
            reply: pb.ClassifyResponse = await self.downstream.Classify(
                pb.ClassifyRequest(text="ok"), timeout=10
            )
            return reply
        return pb.ClassifyResponse(classification=pb.Classification(intent="test/ok"))

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[pb.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        async for request in request_iterator:
            yield pb.ClassifyStreamResponse(request_id=request.request_id)


class RelayModule:
    """ServiceModule; ``runtime`` and ``downstream_target`` are set before ``start``."""

    def __init__(self, downstream_target: str | None = None) -> None:
        self.servicer = RelayServicer()  # type: ignore[abstract]  # Classify, ClassifyStream
        self.downstream_target = downstream_target
        self.runtime: Runtime | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def service_names(self) -> tuple[str, ...]:
        return (SERVICE,)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ClassificationServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        if self.downstream_target and self.runtime is not None:
            target = self.downstream_target
            self._channel = grpc.aio.insecure_channel(
                target, interceptors=self.runtime.client_interceptors(target)
            )
            self.servicer.downstream = pb_grpc.ClassificationServiceStub(self._channel)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)


@asynccontextmanager
async def serving(settings: Settings, module: RelayModule) -> AsyncIterator[tuple[AppServer, int]]:
    """A started server on a free loopback port, stopped (and its spans flushed) on exit."""
    server, port = await create_server(
        settings, ServiceName.CLASSIFICATION, "127.0.0.1:0", module=module
    )
    module.runtime = server.runtime
    try:
        await server.start()
        yield server, port
    finally:
        await server.stop(0)


@asynccontextmanager
async def relayed(
    settings: Settings,
) -> AsyncIterator[tuple[AppServer, AppServer, pb_grpc.ClassificationServiceAsyncStub]]:
    """A relay server in front of a downstream one: (relay, downstream, relay's stub)."""
    async with serving(settings, RelayModule()) as (downstream, downstream_port):
        relay = RelayModule(downstream_target=f"127.0.0.1:{downstream_port}")
        async with (
            serving(settings, relay) as (upstream, port),
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            yield upstream, downstream, pb_grpc.ClassificationServiceStub(channel)


class LogCapture:
    """JSON log lines written while active."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stream.getvalue().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def access(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("event") == "rpc" and e.get("kind") == kind]


@contextmanager
def captured_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("info", "json", stream=capture.stream, cache=False)
    try:
        yield capture
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


async def settle() -> None:
    """Let done-callbacks and background settle tasks run."""
    for _ in range(3):
        await asyncio.sleep(0)
