"""TraceStore and trace views: OTLP conversion, bounds, span trees and waterfalls."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from switchboard_server.observability.trace_store import SpanRecord, TraceStore
from switchboard_server.observability.trace_view import (
    is_health_check,
    render_waterfall,
    span_tree,
    trace_json,
)

TRACE = "ab" * 16


def record(span_id: str, parent: str = "", start: int = 0, end: int = 10, **kw: str) -> SpanRecord:
    fields = {"service": "svc", "name": f"op-{span_id}", "kind": "SERVER", "status": "UNSET"}
    fields.update(kw)
    return SpanRecord(
        trace_id=kw.get("trace_id", TRACE),
        span_id=span_id,
        parent_span_id=parent,
        start_unix_nano=start,
        end_unix_nano=end,
        service=fields["service"],
        name=fields["name"],
        kind=fields["kind"],
        status=fields["status"],
    )


def _request(*span_ids: str) -> otlp.ExportTraceServiceRequest:
    """An export request from ``envoy-edge`` with one CLIENT span per id."""
    spans = [
        trace_pb2.Span(
            trace_id=bytes.fromhex(TRACE),
            span_id=bytes.fromhex(span_id),
            parent_span_id=bytes.fromhex("02" * 8),
            name="/pkg.Service/Method",
            kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=5,
            end_time_unix_nano=9,
            status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR),
            attributes=[
                common_pb2.KeyValue(
                    key="rpc.grpc.status_code", value=common_pb2.AnyValue(int_value=14)
                )
            ],
        )
        for span_id in span_ids
    ]
    return otlp.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        common_pb2.KeyValue(
                            key="service.name", value=common_pb2.AnyValue(string_value="envoy-edge")
                        )
                    ]
                ),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )


def test_a_stored_span_reads_ids_service_kind_status_and_attributes() -> None:
    store = TraceStore()
    store.add_request(_request("01" * 8))
    (got,) = store.trace(TRACE.upper())
    assert got.to_json() == {
        "trace_id": TRACE,
        "span_id": "01" * 8,
        "parent_span_id": "02" * 8,
        "service": "envoy-edge",
        "name": "/pkg.Service/Method",
        "kind": "CLIENT",
        "start_unix_nano": 5,
        "end_unix_nano": 9,
        "status": "ERROR",
        "attributes": {"rpc.grpc.status_code": 14},
    }
    assert SpanRecord.from_json(got.to_json()) == got


def test_spans_of_a_request_are_bounded_and_replaced_like_records() -> None:
    store = TraceStore(max_spans_per_trace=2)
    store.add_request(_request("01" * 8, "03" * 8, "04" * 8))
    store.add([record("01" * 8, name="sent again")])  # replaces the one not yet read
    first = store.trace(TRACE)
    assert [(s.span_id, s.name) for s in first] == [
        ("01" * 8, "sent again"),
        ("03" * 8, "/pkg.Service/Method"),
    ]
    assert store.recent(1) == [first]  # read again: the same records
    assert (store.spans_received, store.spans_dropped) == (4, 1)


def test_store_keeps_the_most_recent_traces_and_bounds_spans() -> None:
    store = TraceStore(max_traces=2, max_spans_per_trace=2)
    for n in range(3):
        store.add([record("01", trace_id=f"{n:032x}")])
    assert [t[0].trace_id for t in store.recent(10)] == [f"{2:032x}", f"{1:032x}"]
    store.add([record("a1"), record("a2"), record("a3")])
    assert len(store.trace(TRACE)) == 2
    assert store.spans_dropped == 3  # two evicted one-span traces, one span over the bound
    assert [t[0].trace_id for t in store.recent(10)] == [TRACE, f"{2:032x}"]
    assert store.recent(0) == []


def test_a_span_sent_twice_is_kept_once() -> None:
    store = TraceStore()
    store.add([record("01")])
    store.add([record("01")])
    assert len(store.trace(TRACE)) == 1


def test_span_tree_orders_depth_first_and_treats_orphans_as_roots() -> None:
    spans = [
        record("c2", parent="b1", start=6),
        record("b1", parent="a0", start=2),
        record("a0", start=0),
        record("c1", parent="b1", start=3),
        record("zz", parent="missing", start=1),
    ]
    assert [(d, s.span_id) for d, s in span_tree(spans)] == [
        (0, "a0"),
        (1, "b1"),
        (2, "c1"),
        (2, "c2"),
        (0, "zz"),
    ]


def test_trace_json_and_waterfall() -> None:
    spans = [record("a0", start=0, end=4_000_000), record("b1", "a0", 1_000_000, 3_000_000)]
    doc = trace_json(spans)
    assert doc["trace_id"] == TRACE
    assert doc["root"] == "op-a0"
    assert doc["span_count"] == 2
    assert doc["duration_ms"] == 4.0
    assert [s["span_id"] for s in doc["spans"]] == ["a0", "b1"]
    text = render_waterfall([*spans, record("c2", "b1", 2_000_000, 2_500_000, status="ERROR")])
    lines = text.splitlines()
    assert lines[0] == f"trace {TRACE}  4.00 ms  3 spans"
    assert "svc: op-a0" in lines[1]
    assert lines[2].index("svc: op-b1") > lines[1].index("svc: op-a0")
    assert lines[3].endswith("ERROR")
    assert trace_json([]) == {"trace_id": "", "spans": []}
    assert render_waterfall([]) == ""


def test_health_probe_traces_are_recognised_and_filtered() -> None:
    probe = [
        SpanRecord(
            trace_id="cd" * 16,
            span_id="01",
            parent_span_id="",
            service="envoy-context",
            name="ingress",
            kind="SERVER",
            start_unix_nano=0,
            end_unix_nano=1,
            status="UNSET",
            attributes={"grpc.path": "/grpc.health.v1.Health/Check", "user_agent": "Envoy/HC"},
        )
    ]
    store = TraceStore()
    store.add([record("a0")])
    store.add(probe)
    assert is_health_check(probe)
    assert not is_health_check(store.trace(TRACE))
    assert [t[0].trace_id for t in store.recent(5)] == ["cd" * 16, TRACE]
    kept = store.recent(5, keep=lambda spans: not is_health_check(spans))
    assert [t[0].trace_id for t in kept] == [TRACE]
    assert trace_json(probe)["method"] == "/grpc.health.v1.Health/Check"
    assert "ingress /grpc.health.v1.Health/Check" in render_waterfall(probe)
