"""Latency exemplars: each bucket's is renewed at most once per EXEMPLAR_REFRESH_S."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from switchboard_server.observability.metrics import EXEMPLAR_REFRESH_S, GrpcMetrics

METHOD = "/switchboard.classification.v1.ClassificationService/Classify"


def _exemplars(registry: CollectorRegistry) -> dict[str, str]:
    """{bucket bound: trace_id} of the buckets that hold an exemplar."""
    return {
        sample.labels["le"]: sample.exemplar.labels["trace_id"]
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "grpc_server_handling_seconds_bucket" and sample.exemplar is not None
    }


def test_a_buckets_exemplar_is_renewed_once_per_refresh_interval() -> None:
    registry = CollectorRegistry()
    series = GrpcMetrics(registry, "server", (0.01, 0.1)).series("unary", METHOD)
    tracer = TracerProvider().get_tracer("test")
    traces = []

    def observe(seconds: float, now: float) -> None:
        with tracer.start_as_current_span("call") as span:
            traces.append(f"{span.get_span_context().trace_id:032x}")
            series.observe(seconds, now)

    series.observe(0.005, 100.0)  # no span current: no exemplar, the bucket stays due
    observe(0.005, 100.0)  # trace 0: the 0.01 bucket's first
    observe(0.006, 100.5)  # trace 1: same bucket, too soon
    observe(0.05, 100.5)  # trace 2: another bucket has its own
    assert _exemplars(registry) == {"0.01": traces[0], "0.1": traces[2]}

    observe(0.007, 100.0 + EXEMPLAR_REFRESH_S)  # trace 3: due again
    observe(5.0, 100.0 + EXEMPLAR_REFRESH_S)  # trace 4: +Inf
    assert _exemplars(registry) == {"0.01": traces[3], "0.1": traces[2], "+Inf": traces[4]}

    counts = {
        sample.labels["le"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "grpc_server_handling_seconds_bucket"
    }
    assert counts == {"0.01": 4.0, "0.1": 5.0, "+Inf": 6.0}  # every observation counted
