"""Server spans from our one server interceptor equal the library interceptor's."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.interceptors import ServerInterceptor
from switchboard_server.observability.server_tracing import ServerSpans
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


async def _spans(interceptors: list[Any], memory: InMemorySpanExporter) -> list[ReadableSpan]:
    """Serve with ``interceptors``, make the same calls, return the spans."""
    server = grpc.aio.server(interceptors=interceptors)
    servicer = _Servicer()  # type: ignore[abstract]  # serves Classify only
    pb_grpc.add_ClassificationServiceServicer_to_server(servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
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
                if len(memory.get_finished_spans()) == 3 + len(FAILING):
                    break
                await asyncio.sleep(0.01)
    finally:
        await server.stop(None)
    return sorted(memory.get_finished_spans(), key=lambda s: s.start_time or 0)


def _shape(span: ReadableSpan) -> dict[str, Any]:
    attributes = dict(span.attributes or {})
    port = attributes.pop("net.peer.port")
    assert isinstance(port, str)
    assert port.isdigit()  # each server's own client port
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


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


async def test_server_spans_are_the_librarys() -> None:
    provider, memory = _provider()
    library_stack = [
        aio_server_interceptor(tracer_provider=provider),  # type: ignore[no-untyped-call]
        ServerInterceptor(),
    ]
    library = await _spans(library_stack, memory)
    provider, memory = _provider()
    ours = await _spans([ServerInterceptor(spans=ServerSpans(provider))], memory)

    assert [_shape(s) for s in ours] == [_shape(s) for s in library]
    assert [s.instrumentation_scope for s in ours] == [s.instrumentation_scope for s in library]
    shapes = [_shape(s) for s in ours]
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
