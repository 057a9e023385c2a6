"""Traced client channels: OpenTelemetry's aio client interceptors outside ours give
every call kind its client span, metrics, access line and headers; a cancelled call's
span is ended too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from switchboard_server.observability.client import ClientTelemetry, telemetry_interceptors
from switchboard_server.observability.client_tracing import traced_client_interceptors
from switchboard_server.observability.metrics import GrpcMetrics
from tests.support.observability import captured_logs, settle

SERVICE = "test.v1.EchoService"
KINDS = ("UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream")
FAIL = b"fail"
SLEEP = b"sleep"


class _Echo:
    """Echo handlers of every kind; a request ``fail`` aborts with INVALID_ARGUMENT
    (a stream after answering once); each call's metadata is kept."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def _seen(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})

    async def unary_unary(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        self._seen(context)
        if request == SLEEP:
            await asyncio.sleep(10)
        if request == FAIL:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        return request

    async def unary_stream(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self._seen(context)
        yield request
        if request == FAIL:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad stream")
        yield request

    async def stream_unary(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        self._seen(context)
        received = [r async for r in requests]
        if FAIL in received:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad requests")
        return b"".join(received)

    async def stream_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self._seen(context)
        async for request in requests:
            if request == FAIL:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad bidi")
            yield request

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "UnaryUnary": grpc.unary_unary_rpc_method_handler(self.unary_unary),
                "UnaryStream": grpc.unary_stream_rpc_method_handler(self.unary_stream),
                "StreamUnary": grpc.stream_unary_rpc_method_handler(self.stream_unary),
                "StreamStream": grpc.stream_stream_rpc_method_handler(self.stream_stream),
            },
        )


def _requests(*items: bytes) -> Iterator[bytes]:
    yield from items


async def _calls(channel: grpc.aio.Channel) -> None:
    """Every kind, ok and failing, under one parent span."""
    uu = channel.unary_unary(f"/{SERVICE}/UnaryUnary", None, None)
    us = channel.unary_stream(f"/{SERVICE}/UnaryStream", None, None)
    su = channel.stream_unary(f"/{SERVICE}/StreamUnary", None, None)
    ss = channel.stream_stream(f"/{SERVICE}/StreamStream", None, None)
    assert await uu(b"ok", metadata=(("x-extra", "1"),)) == b"ok"
    assert [r async for r in us(b"ok")] == [b"ok", b"ok"]
    assert await su(_requests(b"a", b"b")) == b"ab"
    assert [r async for r in ss(_requests(b"a", b"b"))] == [b"a", b"b"]
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await uu(FAIL)
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    received = []

    async def read_failing_stream() -> None:
        async for item in us(FAIL):
            received.append(item)

    with pytest.raises(grpc.aio.AioRpcError):
        await read_failing_stream()
    assert received == [FAIL]
    with pytest.raises(grpc.aio.AioRpcError):
        await su(_requests(b"a", FAIL))
    with pytest.raises(grpc.aio.AioRpcError):
        await ss(_requests(FAIL)).read()


class _Run:
    """One client set-up's calls: spans, server-side metadata, metrics and access lines."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.registry = CollectorRegistry()
        self.metrics = GrpcMetrics(self.registry, "client")
        self.echo = _Echo()
        self.parent: trace.Span | None = None
        self.lines: list[dict[str, Any]] = []

    async def serve(self, interceptors: list[Any], calls: Any) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((self.echo.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            with captured_logs() as logs:
                async with grpc.aio.insecure_channel(
                    f"127.0.0.1:{port}", interceptors=interceptors
                ) as channel:
                    tracer = self.provider.get_tracer("test")
                    with tracer.start_as_current_span("parent") as parent:
                        self.parent = parent
                        await calls(channel)
                    await settle()
            self.lines = logs.access("client")
        finally:
            await server.stop(None)

    def traced(self) -> list[Any]:
        """The interceptors a traced channel of a Switchboard server gets."""
        return traced_client_interceptors(self.provider, self.metrics, target="echo")

    async def cancel_a_call(self, channel: grpc.aio.Channel) -> None:
        """Start a unary call the server sits on, and cancel it once the server has it."""
        task = asyncio.ensure_future(
            channel.unary_unary(f"/{SERVICE}/UnaryUnary", None, None)(SLEEP)
        )
        for _ in range(200):
            if self.echo.metadata:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def spans(self) -> list[ReadableSpan]:
        return [s for s in self.memory.get_finished_spans() if s.name != "parent"]

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name.endswith(("_total", "_count")):
                    out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out


def _description(text: str | None) -> str | None:
    # an AioRpcError's text ends with its debug string (a timestamp, a peer port)
    return None if text is None else text.split("\tdebug_error_string")[0]


def _shape(span: ReadableSpan, parent: trace.Span) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "child_of_parent": span.parent is not None
        and span.parent.span_id == parent.get_span_context().span_id,
        "status": (span.status.status_code, _description(span.status.description)),
        "events": [event.name for event in span.events],
        "scope": span.instrumentation_scope,
    }


def _line(line: dict[str, Any], spans: dict[str, ReadableSpan]) -> tuple[Any, ...]:
    span = spans[line["span_id"]]  # the client span was current when it was written
    assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert len(line["correlation_id"]) == 32
    return (span.name, line["service"], line["method"], line["code"], line["peer"])


async def test_client_spans_metrics_lines_and_headers() -> None:
    run = _Run()
    await run.serve(run.traced(), _calls)
    assert run.parent is not None
    shapes = sorted((_shape(s, run.parent) for s in run.spans()), key=repr)

    assert len(shapes) == 8
    assert all(s["child_of_parent"] and s["kind"] is trace.SpanKind.CLIENT for s in shapes)
    assert sorted(s["name"] for s in shapes) == sorted(
        f"/{SERVICE}/{kind}" for kind in KINDS for _ in ("ok", "failing")
    )
    assert {s["scope"].name for s in shapes} == {"opentelemetry.instrumentation.grpc"}
    ok = next(s for s in shapes if s["name"].endswith("/UnaryUnary") and not s["events"])
    assert ok["attributes"] == {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": 0,
        "rpc.method": "UnaryUnary",
        "rpc.service": SERVICE,
    }
    assert ok["status"] == (trace.StatusCode.UNSET, None)
    assert {s["status"] for s in shapes if s["attributes"]["rpc.grpc.status_code"] == 3} >= {
        (trace.StatusCode.ERROR, "bad request")
    }
    assert sum(s["status"][0] is trace.StatusCode.ERROR for s in shapes) == 4

    handled = {
        labels: value
        for (name, labels), value in run.samples().items()
        if name == "grpc_client_handled_total"
    }
    assert sorted(dict(labels)["grpc_code"] for labels, value in handled.items() if value) == (
        ["INVALID_ARGUMENT"] * 4 + ["OK"] * 4
    )
    assert (
        handled[
            (
                ("grpc_code", "INVALID_ARGUMENT"),
                ("grpc_method", "UnaryUnary"),
                ("grpc_service", SERVICE),
                ("grpc_type", "unary"),
            )
        ]
        == 1
    )

    spans = {f"{s.context.span_id:016x}": s for s in run.spans()}
    assert len(run.lines) == 8
    assert sorted(_line(line, spans) for line in run.lines) == sorted(
        (f"/{SERVICE}/{kind}", SERVICE, kind, code, "echo")
        for kind in KINDS
        for code in ("OK", "INVALID_ARGUMENT")
    )

    # each call carried its own span's traceparent
    span_ids = {s.context.span_id for s in run.spans()}
    assert len(run.echo.metadata) == 8
    for headers in run.echo.metadata:
        _, _, span_id, flags = headers["traceparent"].split("-")
        assert int(span_id, 16) in span_ids
        assert int(flags, 16) & 1  # sampled
        assert len(headers["x-correlation-id"]) == 32
    assert run.echo.metadata[0]["x-extra"] == "1"


async def test_a_cancelled_call_ends_its_span_and_counts_as_cancelled() -> None:
    run = _Run()

    await run.serve(run.traced(), run.cancel_a_call)
    [span] = run.spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert (span.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert [line["code"] for line in run.lines] == ["CANCELLED"]
    assert [line["span_id"] for line in run.lines] == [f"{span.context.span_id:016x}"]


async def test_the_library_alone_still_leaves_a_cancelled_calls_span_open() -> None:
    """Why client_tracing ends a cancelled call's span (opentelemetry-python-contrib
    #3271). When this fails, the library ends it itself: drop ``end_cancelled_span``."""
    run = _Run()
    telemetry = ClientTelemetry(run.metrics, target="echo")
    library = aio_client_interceptors(tracer_provider=run.provider)  # type: ignore[no-untyped-call]

    await run.serve([*library, *telemetry_interceptors(telemetry)], run.cancel_a_call)
    assert run.spans() == []
    assert [line["code"] for line in run.lines] == ["CANCELLED"]


async def test_suppressed_instrumentation_still_meters_and_forwards_the_correlation_id() -> None:
    run = _Run()

    async def suppressed(channel: grpc.aio.Channel) -> None:
        with suppress_instrumentation():
            assert await channel.unary_unary(f"/{SERVICE}/UnaryUnary", None, None)(b"ok") == b"ok"

    await run.serve(run.traced(), suppressed)
    assert run.spans() == []
    assert [line["code"] for line in run.lines] == ["OK"]
    assert "x-correlation-id" in run.echo.metadata[0]
    assert "traceparent" not in run.echo.metadata[0]
    assert otel_context.get_current() == {}
