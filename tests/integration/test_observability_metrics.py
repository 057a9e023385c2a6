"""RED metrics on /metrics: counters equal the calls made, per method and code.

A real server on port 0 with its /metrics endpoint on a free port; calls over a real
channel; the exposition is fetched over HTTP and parsed with prometheus-client's parser.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.config import CoreSettings, Settings
from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.observability.trace_receiver import TraceReceiver
from tests.support.observability import SERVICE, RelayModule, serving, settle


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        core=CoreSettings(data_dir=tmp_path),
        observability=ObservabilitySettings(metrics_port=0),
    )


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label items: value} of every sample called ``name``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def key(grpc_type: str, method: str, code: str | None = None) -> tuple[tuple[str, str], ...]:
    labels = {"grpc_type": grpc_type, "grpc_service": SERVICE, "grpc_method": method}
    if code is not None:
        labels["grpc_code"] = code
    return tuple(sorted(labels.items()))


async def scrape(port: int, *, openmetrics: bool = False) -> str:
    headers = {"Accept": "application/openmetrics-text"} if openmetrics else {}
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/metrics", headers=headers)
    reply.raise_for_status()
    return reply.text


async def test_server_counters_equal_calls_per_method_and_code(tmp_path: Path) -> None:
    module = RelayModule()
    async with (
        serving(settings_for(tmp_path), module) as (server, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = pb_grpc.ClassificationServiceStub(channel)
        for _ in range(3):
            await stub.Classify(pb.ClassifyRequest(text="hello"), timeout=5)
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.Classify(pb.ClassifyRequest(text=""), timeout=5)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stub.Classify(pb.ClassifyRequest(text="unavailable"), timeout=5)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        stream = stub.ClassifyStream(
            iter([pb.ClassifyStreamRequest(request_id=str(i), text="x") for i in range(4)]),
            timeout=5,
        )
        replies = [r.request_id async for r in stream]
        assert replies == ["0", "1", "2", "3"]
        await settle()
        assert server.observability.metrics_port is not None
        text = await scrape(server.observability.metrics_port)

    started = samples(text, "grpc_server_started_total")
    handled = samples(text, "grpc_server_handled_total")
    assert started[key("unary", "Classify")] == 6
    assert handled[key("unary", "Classify", "OK")] == 3
    assert handled[key("unary", "Classify", "INVALID_ARGUMENT")] == 2
    assert handled[key("unary", "Classify", "UNAVAILABLE")] == 1
    assert started[key("bidi_stream", "ClassifyStream")] == 1
    assert handled[key("bidi_stream", "ClassifyStream", "OK")] == 1
    assert (
        samples(text, "grpc_server_msg_received_total")[key("bidi_stream", "ClassifyStream")] == 4
    )
    assert samples(text, "grpc_server_msg_sent_total")[key("bidi_stream", "ClassifyStream")] == 4
    assert samples(text, "grpc_server_msg_sent_total")[key("unary", "Classify")] == 3
    counts = samples(text, "grpc_server_handling_seconds_count")
    assert counts[key("unary", "Classify")] == 6
    # Health checks and reflection are counted too, under their own service label.
    assert "process_cpu_seconds_total" in {
        s.name for f in text_string_to_metric_families(text) for s in f.samples
    }


async def test_every_method_and_code_exists_at_zero_before_any_call(tmp_path: Path) -> None:
    async with serving(settings_for(tmp_path), RelayModule()) as (server, _):
        assert server.observability.metrics_port is not None
        text = await scrape(server.observability.metrics_port)
    handled = samples(text, "grpc_server_handled_total")
    assert handled[key("unary", "AddExamples", "INTERNAL")] == 0
    assert handled[key("bidi_stream", "ClassifyStream", "OK")] == 0
    assert len([k for k in handled if dict(k)["grpc_method"] == "Classify"]) == 17
    assert samples(text, "grpc_server_started_total")[key("unary", "GetModelInfo")] == 0


async def test_latency_histogram_carries_trace_id_exemplars(tmp_path: Path) -> None:
    receiver = TraceReceiver(port=0, query_port=0)  # exemplars need tracing on
    receiver.start()
    settings = dataclasses.replace(
        settings_for(tmp_path),
        observability=ObservabilitySettings(
            metrics_port=0, otlp_endpoint=receiver.otlp_endpoint, trace_sample_ratio=1.0
        ),
    )
    try:
        async with (
            serving(settings, RelayModule()) as (server, port),
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            stub = pb_grpc.ClassificationServiceStub(channel)
            await stub.Classify(pb.ClassifyRequest(text="hello"), timeout=5)
            assert server.observability.metrics_port is not None
            text = await scrape(server.observability.metrics_port, openmetrics=True)
    finally:
        receiver.stop()

    exemplars = [
        sample.exemplar
        for family in openmetrics_families(text)  # type: ignore[no-untyped-call]
        if family.name == "grpc_server_handling_seconds"
        for sample in family.samples
        if sample.exemplar is not None and sample.labels.get("grpc_method") == "Classify"
    ]
    assert len(exemplars) == 1
    assert len(exemplars[0].labels["trace_id"]) == 32
    assert int(exemplars[0].labels["trace_id"], 16) != 0


async def test_client_counters_count_outbound_calls(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with serving(settings, RelayModule()) as (_, downstream_port):
        relay = RelayModule(downstream_target=f"127.0.0.1:{downstream_port}")
        async with (
            serving(settings, relay) as (server, port),
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            stub = pb_grpc.ClassificationServiceStub(channel)
            for _ in range(2):
                await stub.Classify(pb.ClassifyRequest(text="relay"), timeout=5)
            await settle()
            assert server.observability.metrics_port is not None
            text = await scrape(server.observability.metrics_port)

    assert samples(text, "grpc_client_started_total") == {key("unary", "Classify"): 2}
    assert samples(text, "grpc_client_handled_total") == {key("unary", "Classify", "OK"): 2}
    assert samples(text, "grpc_client_handling_seconds_count") == {key("unary", "Classify"): 2}
    assert samples(text, "grpc_client_msg_received_total") == {key("unary", "Classify"): 2}
