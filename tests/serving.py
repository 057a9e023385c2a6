"""Waiting for a server process that a test started to report ``grpc.health.v1`` SERVING.

A connected channel is not enough: until the service is ready (a store open, a model
loaded) its RPCs answer UNAVAILABLE "not ready".
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def wait_serving(
    channel: grpc.Channel,
    proc: subprocess.Popen[Any],
    timeout: float = 30.0,
    *,
    exited: Callable[[], str] = lambda: "the server exited during start-up",
) -> None:
    """Until the server in ``proc`` reports SERVING on ``channel``; fails at once, with
    ``exited()`` as the message, if the process ends first."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, exited()
        with contextlib.suppress(grpc.RpcError):
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.1)
    raise AssertionError("the server did not become SERVING")
