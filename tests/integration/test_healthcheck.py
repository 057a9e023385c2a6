"""``switchboard-health`` against a real gRPC server: exit 0 only on SERVING, 1 on
NOT_SERVING, an unknown service or nothing listening; installed as a console script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switchboard_server.healthcheck import main
from switchboard_server.testing import free_port

SERVICE = "switchboard.context.v1.ContextService"


@pytest.fixture
def served() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_exit_0_only_while_serving(
    served: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = served
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)

    assert main(["--address", address]) == 0
    assert "SERVING" in capsys.readouterr().out
    assert main(["--address", address, "--service", SERVICE]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err

    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    assert main(["--address", address, "--service", SERVICE]) == 0
    servicer.enter_graceful_shutdown()
    assert main(["--address", address]) == 1


def test_exit_1_for_an_unknown_service_and_for_no_server(
    served: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = served
    assert main(["--address", address, "--service", "no.such.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert main(["--address", f"127.0.0.1:{free_port()}", "--timeout", "0.5"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_installed_as_a_console_script(served: tuple[str, health.HealthServicer]) -> None:
    address, servicer = served
    script = Path(sys.executable).parent / "switchboard-health"
    assert script.exists(), "not installed: make venv"
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    run = subprocess.run([str(script), "--address", address], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    run = subprocess.run([str(script), "--address", address], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
