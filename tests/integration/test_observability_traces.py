"""Traces and logs across a real client/server pair, collected by the real receiver.

caller ──► relay server ──(client interceptors)──► downstream server, both exporting
OTLP/gRPC to a TraceReceiver on free loopback ports; the receiver is queried over its
HTTP API and the ``switchboard traces`` command.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_client.cli import build_parser
from switchboard_server.config import CoreSettings, Settings
from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.observability.trace_receiver import TraceReceiver
from tests.support.observability import RelayModule, captured_logs, relayed, serving, settle

RECEIVER_CMD = (sys.executable, "-m", "switchboard_client.cli", "trace-receiver")
CLASSIFY = "/switchboard.classification.v1.ClassificationService/Classify"


@pytest.fixture
def receiver() -> Iterator[TraceReceiver]:
    receiver = TraceReceiver(port=0, query_port=0)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


async def relay_once(
    tmp_path: Path, receiver: TraceReceiver, correlation_id: str
) -> tuple[str | bytes, list[dict[str, Any]]]:
    """One relayed Classify; returns the correlation id echoed back and the log lines."""
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path),
        observability=ObservabilitySettings(
            otlp_endpoint=receiver.otlp_endpoint, trace_sample_ratio=1.0
        ),
    )
    with captured_logs() as logs:
        async with relayed(settings) as (_, _, stub):
            call = stub.Classify(
                pb.ClassifyRequest(text="relay"),
                metadata=(("x-correlation-id", correlation_id),),
                timeout=5,
            )
            reply = await call
            assert reply.classification.intent == "test/ok"
            echoed = dict(await call.trailing_metadata())["x-correlation-id"]
            await settle()
        # Leaving the servers flushes their span processors into the receiver.
        return echoed, logs.lines()


async def query(receiver: TraceReceiver, path: str) -> Any:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{receiver.query_url}{path}")
    reply.raise_for_status()
    return reply.json()


async def test_one_relayed_call_is_one_correctly_parented_trace(
    tmp_path: Path, receiver: TraceReceiver
) -> None:
    await relay_once(tmp_path, receiver, "corr-trace-1")

    traces = await query(receiver, "/traces?limit=10")
    assert len(traces) == 1
    spans = traces[0]["spans"]
    assert [(s["kind"], s["name"]) for s in spans] == [
        ("SERVER", CLASSIFY),
        ("CLIENT", CLASSIFY),
        ("SERVER", CLASSIFY),
    ]
    root, client, downstream = spans
    assert root["parent_span_id"] == ""
    assert client["parent_span_id"] == root["span_id"]
    assert downstream["parent_span_id"] == client["span_id"]
    assert {s["trace_id"] for s in spans} == {traces[0]["trace_id"]}
    assert {s["service"] for s in spans} == {"switchboard-classification"}
    assert all(s["status"] == "UNSET" for s in spans)
    assert root["start_unix_nano"] <= client["start_unix_nano"] < client["end_unix_nano"]
    assert client["end_unix_nano"] <= root["end_unix_nano"]
    assert await query(receiver, f"/traces/{traces[0]['trace_id']}") == traces[0]


async def test_health_probe_traces_are_hidden_unless_asked_for(
    tmp_path: Path, receiver: TraceReceiver
) -> None:
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path),
        observability=ObservabilitySettings(
            otlp_endpoint=receiver.otlp_endpoint, trace_sample_ratio=1.0
        ),
    )
    async with (
        serving(settings, RelayModule()) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        await pb_grpc.ClassificationServiceStub(channel).Classify(
            pb.ClassifyRequest(text="hello"), timeout=5
        )
    default = await query(receiver, "/traces?limit=10")
    everything = await query(receiver, "/traces?limit=10&health=true")
    assert [t["method"] for t in default] == [CLASSIFY]
    assert sorted(t["method"] for t in everything) == sorted(
        [CLASSIFY, "/grpc.health.v1.Health/Check"]
    )


async def test_access_lines_share_correlation_and_trace_ids(
    tmp_path: Path, receiver: TraceReceiver
) -> None:
    echoed, lines = await relay_once(tmp_path, receiver, "corr-logs-1")
    assert echoed == "corr-logs-1"

    access = [e for e in lines if e.get("event") == "rpc" and e.get("method") == "Classify"]
    kinds = sorted(e["kind"] for e in access)
    assert kinds == ["client", "server", "server"]
    assert {e["correlation_id"] for e in access} == {"corr-logs-1"}
    (trace,) = await query(receiver, "/traces?limit=10")
    assert {e["trace_id"] for e in access} == {trace["trace_id"]}
    span_ids = {(s["kind"].lower(), s["span_id"]) for s in trace["spans"]}
    assert {(e["kind"], e["span_id"]) for e in access} == span_ids
    for line in access:
        assert line["code"] == "OK"
        assert line["service"] == "switchboard.classification.v1.ClassificationService"
        assert isinstance(line["duration_ms"], float)
        assert line["peer"]


async def test_traces_command_prints_trees_and_json(
    tmp_path: Path, receiver: TraceReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    await relay_once(tmp_path, receiver, "corr-cli-1")
    capsys.readouterr()
    parser = build_parser()

    args = parser.parse_args(["traces", "--json", "--limit", "5", "--url", receiver.query_url])
    assert args.func(args) == 0
    documents = json.loads(capsys.readouterr().out)
    assert len(documents) == 1
    assert {
        "trace_id",
        "span_id",
        "parent_span_id",
        "service",
        "name",
        "start_unix_nano",
        "end_unix_nano",
        "status",
    } <= set(documents[0]["spans"][0])

    args = parser.parse_args(["traces", "--url", receiver.query_url])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if "Classify" in line]
    assert len(lines) == 3
    assert text.startswith(f"trace {documents[0]['trace_id']}")
    # children are indented under their parents
    indents = [line.index("switchboard-") for line in lines]
    assert indents[0] < indents[1] < indents[2]


async def test_traces_command_reports_an_unreachable_receiver(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SWITCHBOARD_OBS_RECEIVER_QUERY_PORT", str(port))
    args = build_parser().parse_args(["traces"])
    code = args.func(args)
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"cannot query http://127.0.0.1:{port}" in err


def test_trace_receiver_command_runs_standalone_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [*RECEIVER_CMD, "--port", "0", "--query-port", "0"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("event") == "receiver.ready":
                ready = event
                break
        assert ready is not None
        health = httpx.get(f"http://127.0.0.1:{ready['query_port']}/healthz", timeout=5)
        assert health.text == "ok"
        assert httpx.get(f"http://127.0.0.1:{ready['query_port']}/traces").json() == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_client_interceptors_outside_an_rpc_generate_and_forward_a_correlation_id(
    tmp_path: Path,
) -> None:
    settings = Settings(core=CoreSettings(data_dir=tmp_path))
    with captured_logs() as logs:
        async with serving(settings, RelayModule()) as (server, port):
            target = f"127.0.0.1:{port}"
            interceptors = server.observability.client_interceptors(target)
            async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
                stub = pb_grpc.ClassificationServiceStub(channel)
                await stub.Classify(pb.ClassifyRequest(text="hello"), timeout=5)
                stream = stub.ClassifyStream(
                    iter([pb.ClassifyStreamRequest(request_id=str(i)) for i in range(3)]),
                    timeout=5,
                )
                assert [r.request_id async for r in stream] == ["0", "1", "2"]
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Classify(pb.ClassifyRequest(text=""), timeout=5)
                await settle()
        lines = logs.lines()

    access = [e for e in lines if e.get("event") == "rpc"]
    by_kind: dict[str, list[dict[str, Any]]] = {"client": [], "server": []}
    for line in access:
        by_kind[line["kind"]].append(line)
    assert [(e["method"], e["code"]) for e in by_kind["client"]] == [
        ("Classify", "OK"),
        ("ClassifyStream", "OK"),
        ("Classify", "INVALID_ARGUMENT"),
    ]
    for client, srv in zip(by_kind["client"], by_kind["server"], strict=True):
        assert len(client["correlation_id"]) == 32
        assert srv["correlation_id"] == client["correlation_id"]
        assert client["peer"] == target
    assert len({e["correlation_id"] for e in by_kind["client"]}) == 3


async def test_with_tracing_off_the_callers_trace_context_still_flows_through(
    tmp_path: Path,
) -> None:
    """No exporter: no spans at all, yet the caller's traceparent reaches the downstream
    server unchanged and every access line of the call carries its trace id."""
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{caller_trace}-00f067aa0ba902b7-01"
    settings = Settings(core=CoreSettings(data_dir=tmp_path))
    with captured_logs() as logs:
        async with relayed(settings) as (upstream, downstream, stub):
            assert not upstream.observability.tracing
            assert not downstream.observability.tracing
            await stub.Classify(
                pb.ClassifyRequest(text="relay"),
                metadata=(("traceparent", traceparent),),
                timeout=5,
            )
            await settle()
    access = logs.access("server") + logs.access("client")
    assert sorted(e["kind"] for e in access) == ["client", "server", "server"]
    assert {e["trace_id"] for e in access} == {caller_trace}
    # Nothing made a span of its own: every line names the caller's span.
    assert {e["span_id"] for e in access} == {"00f067aa0ba902b7"}


async def test_spans_reach_the_receiver_within_the_export_interval(
    tmp_path: Path, receiver: TraceReceiver
) -> None:
    """No flush on shutdown needed: a live server exports within its interval."""
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path),
        observability=ObservabilitySettings(
            otlp_endpoint=receiver.otlp_endpoint, export_interval_ms=200, trace_sample_ratio=1.0
        ),
    )
    async with (
        serving(settings, RelayModule()) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        await pb_grpc.ClassificationServiceStub(channel).Classify(
            pb.ClassifyRequest(text="hello"), timeout=5
        )
        traces: list[Any] = []
        for _ in range(30):  # 3 s at most, the SDK's own default would be 5 s
            traces = await query(receiver, "/traces?limit=10")
            if traces:
                break
            await asyncio.sleep(0.1)
    assert [t["method"] for t in traces] == [CLASSIFY]
