"""Server spans of a traced server: OpenTelemetry's aio server interceptor outside ours,
as ``Observability.server_interceptors()`` stacks them."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.config import ServiceName, Settings
from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.observability.setup import Observability
from tests.support.scaffold_module import ScriptedServicer

FAILING = (
    ("", "INVALID_ARGUMENT"),  # a domain error, mapped by the interceptor
    ("unavailable", "UNAVAILABLE"),
    ("boom", "INTERNAL"),  # an unexpected exception
    ("abort", "UNAVAILABLE"),  # the servicer aborts, with details
    ("abort-bare", "DATA_LOSS"),  # ... without
    ("set-code", "INTERNAL"),  # it sets a code and returns
    ("set-code-details", "UNKNOWN"),  # ... and details
)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Servicer(ScriptedServicer):
    """Also ends calls through the context itself, as a servicer may."""

    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClassifyResponse:
        if request.text == "abort":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gone away")
        if request.text == "abort-bare":
            await context.abort(grpc.StatusCode.DATA_LOSS)
        if request.text.startswith("set-code"):
            context.set_code(grpc.StatusCode[dict(FAILING)[request.text]])
            if request.text == "set-code-details":
                context.set_details("odd state")
            return pb.ClassifyResponse()
        return await super().Classify(request, context)


async def _spans() -> list[ReadableSpan]:
    """Serve with a traced server's interceptors, make the calls, return the spans."""
    memory = InMemorySpanExporter()
    settings = Settings(observability=ObservabilitySettings(trace_sample_ratio=1.0))
    observability = Observability(
        settings, ServiceName.CLASSIFICATION, CollectorRegistry(), span_exporter=memory
    )
    provider = observability.tracer_provider
    assert isinstance(provider, TracerProvider)
    server = grpc.aio.server(interceptors=observability.server_interceptors())
    pb_grpc.add_ClassificationServiceServicer_to_server(
        _Servicer(),  # type: ignore[abstract]  # serves Classify only
        server,
    )
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ClassificationServiceStub(channel)
            traced = (("traceparent", PARENT),)
            for _ in range(2):  # the second call goes through the wrapped-once handler
                await stub.Classify(pb.ClassifyRequest(text="hello"), metadata=traced)
            for text, code in FAILING:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.Classify(pb.ClassifyRequest(text=text))
                assert failed.value.code().name == code
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="")
            )
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
            for _ in range(200):  # the server sees the cancellation, then ends the span
                provider.force_flush()
                if len(memory.get_finished_spans()) == 3 + len(FAILING):
                    break
                await asyncio.sleep(0.01)
    finally:
        await server.stop(None)
        observability.shutdown()
    return sorted(memory.get_finished_spans(), key=lambda s: s.start_time or 0)


def _shape(span: ReadableSpan) -> dict[str, Any]:
    attributes = dict(span.attributes or {})
    assert str(attributes.pop("net.peer.port")).isdigit()  # each server's own client port
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": attributes,
        "parent": f"{parent.span_id:016x}" if parent is not None else None,
        "trace_id": f"{span.context.trace_id:032x}" if parent is not None else "new",
        "status": (span.status.status_code, span.status.description),
        "events": [event.name for event in span.events],
    }


async def test_server_spans_carry_the_call_its_caller_and_its_outcome() -> None:
    spans = await _spans()
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "opentelemetry.instrumentation.grpc"
    }
    assert all(s.kind is trace.SpanKind.SERVER for s in spans)
    shapes = [_shape(s) for s in spans]
    calls = 2 + len(FAILING)
    assert [s["name"].rsplit("/", 1)[1] for s in shapes] == ["Classify"] * calls + ["Watch"]
    assert shapes[0]["parent"] == "b7ad6b7169203331"
    assert shapes[0]["trace_id"] == TRACE_ID
    assert shapes[0]["attributes"] == {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": 0,
        "rpc.method": "Classify",
        "rpc.service": "switchboard.classification.v1.ClassificationService",
        "rpc.user_agent": shapes[0]["attributes"]["rpc.user_agent"],
        "net.peer.ip": "127.0.0.1",
        "net.peer.name": "localhost",
    }
    assert shapes[2]["attributes"]["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
    statuses = [(s["attributes"]["rpc.grpc.status_code"], *s["status"]) for s in shapes[2:calls]]
    assert [(code, status.name, text) for code, status, text in statuses] == [
        (3, "UNSET", None),  # INVALID_ARGUMENT is the caller's fault
        (14, "ERROR", "StatusCode.UNAVAILABLE:model not loaded"),
        (13, "ERROR", "StatusCode.INTERNAL:internal error"),
        (14, "ERROR", "StatusCode.UNAVAILABLE:gone away"),
        (15, "ERROR", "StatusCode.DATA_LOSS:"),
        (13, "ERROR", "StatusCode.INTERNAL:internal"),
        (2, "ERROR", "StatusCode.UNKNOWN:odd state"),
    ]
