"""`python -m switchboard_server <service>` as an operator runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.testing import free_port, stop_process, sync_probe_channel, wait_serving
from tests.support.context import start_server


def test_a_service_that_cannot_get_ready_exits_non_zero_and_says_why(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_PORT": "0",
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_CLASSIFICATION_TRAIN_PATH": str(tmp_path / "missing.jsonl"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard_server", "classification"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "server.start_failed" in proc.stdout
    assert "missing.jsonl" in proc.stdout


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_a_service_serves_on_the_configured_event_loop_and_stops_cleanly(
    tmp_path: Path, event_loop: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_EVENT_LOOP": event_loop,
        "SWITCHBOARD_CONTEXT_SEED_DEFAULT_KNOWLEDGE": "false",
    }
    log = tmp_path / "server.log"
    proc = start_server(env, log)
    try:
        with sync_probe_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, proc)
            stub = pb_grpc.ContextServiceStub(channel)
            stub.AppendMemory(
                pb.AppendMemoryRequest(
                    session_id="loop",
                    entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_WORKING, content="hi")],
                ),
                timeout=10,
            )
            stats = stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="loop"), timeout=10)
        assert stats.memory_stats.working_count == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    starting = [
        json.loads(line) for line in log.read_text().splitlines() if '"server.starting"' in line
    ]
    assert [line["event_loop"] for line in starting] == [event_loop]


def test_after_sigterm_a_service_answers_not_serving_but_still_serves_for_the_drain_delay(
    tmp_path: Path,
) -> None:
    """Rolling restarts: callers' health checks need a moment to see NOT_SERVING, and a
    call that arrives meanwhile is answered, not refused."""
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_DRAIN_DELAY_S": "3",
        "SWITCHBOARD_CONTEXT_SEED_DEFAULT_KNOWLEDGE": "false",
    }
    proc = start_server(env, tmp_path / "server.log")
    try:
        with sync_probe_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, proc)
            health = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.ContextServiceStub(channel)
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 2
            status = health_pb2.HealthCheckResponse.SERVING
            while status == health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "health never went NOT_SERVING"
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            stats = stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="late"), timeout=5)
            assert stats.memory_stats.working_count == 0
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
