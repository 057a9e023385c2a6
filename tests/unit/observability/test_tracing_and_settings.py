"""Tracer provider from settings, domain spans, metric helpers, settings validation."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
import structlog
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import AttributeValue
from pydantic import ValidationError

from switchboard_server.observability.metrics import split_method, status_code_of
from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.observability.tracing import (
    build_tracer_provider,
    confidence_bucket,
    domain_span,
    tracing_enabled,
)
from tests.support.observability import captured_logs


def shutdown(provider: trace.TracerProvider) -> None:
    """Flush and stop a provider ``build_tracer_provider`` made (an SDK one)."""
    assert isinstance(provider, SdkTracerProvider)
    provider.shutdown()


def test_domain_spans_nest_and_carry_attributes_and_errors() -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(
        ObservabilitySettings(trace_sample_ratio=1.0), "orchestration", exporter=exporter
    )
    with domain_span(provider, "compose", sources=3, degraded=False) as outer:
        with domain_span(provider, "classify", intent_l1="billing"):
            pass
        outer.set_attribute("confidence_bucket", confidence_bucket(0.87))
    with pytest.raises(RuntimeError), domain_span(provider, "remember"):
        raise RuntimeError("store down")
    shutdown(provider)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["classify"].parent is not None
    assert spans["classify"].parent.span_id == spans["compose"].context.span_id
    assert dict(spans["compose"].attributes or {}) == {
        "sources": 3,
        "degraded": False,
        "confidence_bucket": "0.8-0.9",
    }
    assert spans["remember"].status.status_code is StatusCode.ERROR
    assert spans["compose"].resource.attributes["service.name"] == "switchboard-orchestration"


def test_sampling_defaults_to_a_tenth_of_new_traces_and_follows_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO", raising=False)
    settings = ObservabilitySettings()
    assert settings.trace_sample_ratio == 0.1
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(settings, "context", exporter=exporter)
    new_traces = 2000
    sampled = 0
    for _ in range(new_traces):
        with domain_span(provider, "root") as span:
            sampled += span.get_span_context().trace_flags.sampled
    assert 0.05 * new_traces < sampled < 0.15 * new_traces  # ~10 standard deviations
    for flags, recorded in (("01", True), ("00", False)):
        caller = f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"
        token = context.attach(propagate.extract({"traceparent": caller}))
        try:
            with domain_span(provider, "child") as span:
                assert span.is_recording() is recorded
        finally:
            context.detach(token)
    shutdown(provider)


def test_sample_ratio_zero_samples_no_new_trace_but_keeps_ids() -> None:
    exporter = InMemorySpanExporter()
    settings = ObservabilitySettings(trace_sample_ratio=0.0)
    provider = build_tracer_provider(settings, "context", exporter=exporter)
    with domain_span(provider, "retrieve") as span:
        assert span.get_span_context().trace_id != 0
        assert not span.get_span_context().trace_flags.sampled
    shutdown(provider)
    assert exporter.get_finished_spans() == ()


def test_empty_otlp_endpoint_turns_tracing_off_but_keeps_the_callers_trace() -> None:
    settings = ObservabilitySettings(otlp_endpoint="")
    assert not tracing_enabled(settings, None)
    provider = build_tracer_provider(settings, "context")
    with domain_span(provider, "retrieve") as span:
        assert not span.is_recording()
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = context.attach(propagate.extract({"traceparent": caller}))
    try:
        with domain_span(provider, "retrieve") as span:
            assert not span.is_recording()
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
    finally:
        context.detach(token)
    assert carrier["traceparent"] == caller  # passed on unchanged


@pytest.mark.parametrize(
    ("value", "bucket"), [(0.0, "0.0-0.1"), (0.05, "0.0-0.1"), (0.95, "0.9-1.0"), (1.0, "0.9-1.0")]
)
def test_confidence_buckets_are_bounded(value: float, bucket: str) -> None:
    assert confidence_bucket(value) == bucket


def test_settings_reject_bad_buckets_and_ratios() -> None:
    with pytest.raises(ValidationError, match="latency_buckets_s"):
        ObservabilitySettings(latency_buckets_s=(0.1, 0.05))
    with pytest.raises(ValidationError, match="trace_sample_ratio"):
        ObservabilitySettings(trace_sample_ratio=1.5)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_OBS_LATENCY_BUCKETS_S", "[0.01, 0.1, 1]")
    monkeypatch.setenv("SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO", "0.25")
    settings = ObservabilitySettings()
    assert settings.latency_buckets_s == (0.01, 0.1, 1.0)
    assert settings.trace_sample_ratio == 0.25


def test_metric_helpers() -> None:
    assert split_method("/pkg.v1.Service/Method") == ("pkg.v1.Service", "Method")
    assert split_method(b"/pkg.v1.Service/Method") == ("pkg.v1.Service", "Method")
    assert status_code_of(grpc.StatusCode.NOT_FOUND) is grpc.StatusCode.NOT_FOUND
    assert status_code_of(3) is grpc.StatusCode.INVALID_ARGUMENT
    assert status_code_of(None) is None


def test_json_logs_carry_logger_level_and_trace_ids() -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(
        ObservabilitySettings(trace_sample_ratio=1.0), "context", exporter=exporter
    )
    with captured_logs() as logs:
        log = structlog.get_logger("switchboard.test")
        with domain_span(provider, "retrieve") as span:
            log.info("retrieved", sources=2)
        log.debug("hidden")
    shutdown(provider)
    (line,) = logs.lines()
    ctx = span.get_span_context()
    assert line["event"] == "retrieved"
    assert line["logger"] == "switchboard.test"
    assert line["level"] == "info"
    assert line["sources"] == 2
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")


def test_current_span_nests_records_failures_and_leaves_cancellations_unset() -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(
        ObservabilitySettings(trace_sample_ratio=1.0), "orchestration", exporter=exporter
    )
    tracer = provider.get_tracer("switchboard.orchestration")

    def span(name: str, attributes: dict[str, AttributeValue] | None = None) -> Any:
        return tracer.start_as_current_span(name, attributes=attributes)

    with span("outer", {"a": 1}) as outer:
        with span("inner"):
            trace.get_current_span().set_attribute("seen", True)
        with pytest.raises(ValueError, match="bad"), span("failing"):
            raise ValueError("bad")
        with pytest.raises(asyncio.CancelledError), span("cancelled"):
            raise asyncio.CancelledError
        outer.set_attribute("b", "x")
    assert trace.get_current_span() is trace.INVALID_SPAN
    provider.force_flush()  # type: ignore[attr-defined]
    spans = exporter.get_finished_spans()
    ids = {s.context.span_id: s.name for s in spans}
    ours = [
        (
            s.name,
            s.kind,
            ids.get(s.parent.span_id) if s.parent else None,
            dict(s.attributes or {}),
            s.status.status_code,
            s.status.description,
            [(e.name, (e.attributes or {}).get("exception.type")) for e in s.events],
        )
        for s in spans
    ]
    assert [s[0] for s in ours] == ["inner", "failing", "cancelled", "outer"]
    assert [s[2] for s in ours] == ["outer", "outer", "outer", None]
    assert ours[0][3] == {"seen": True}
    assert ours[3][3] == {"a": 1, "b": "x"}
    assert ours[1][4:] == (StatusCode.ERROR, "ValueError: bad", [("exception", "ValueError")])
    assert ours[2][4:] == (StatusCode.UNSET, None, [])
