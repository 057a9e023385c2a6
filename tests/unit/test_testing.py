"""switchboard_server.testing: distinct, bindable loopback ports below the kernel's
ephemeral range, and waiting for SERVING that fails instead of hanging."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from switchboard_server.testing import (
    PortPool,
    ServerExited,
    _ephemeral_low,
    free_port,
    probe_channel,
    sync_probe_channel,
    wait_serving,
    wait_serving_async,
)


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    pool = PortPool()
    held = socket.socket()  # a port taken meanwhile is skipped
    try:
        first = pool()
        taken = first + 1
        while True:  # the next free port above the first (others may be busy on this host)
            try:
                held.bind(("127.0.0.1", taken))
                break
            except OSError:
                taken += 1
        ports = [first] + [pool() for _ in range(30)]
        assert taken not in ports
        assert len(set(ports)) == len(ports)
        assert all(1024 <= port < _ephemeral_low() for port in ports)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", ports[-1]))  # free when handed out
    finally:
        held.close()


def test_a_strided_port_has_its_partner_free_and_reserved() -> None:
    pool = PortPool()
    port = pool(stride=5)
    later = [pool() for _ in range(10)]
    assert port + 5 not in later  # replica 1's port is not handed out again


def test_waiting_on_a_server_that_exits_fails_at_once_with_its_message() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(10)
    started = time.monotonic()
    with (
        grpc.insecure_channel(f"127.0.0.1:{free_port()}") as channel,
        pytest.raises(ServerExited, match="log tail"),
    ):
        wait_serving(channel, process, timeout=30, exited=lambda: "log tail")
    assert time.monotonic() - started < 5


def test_waiting_on_nothing_times_out() -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{free_port()}") as channel,
        pytest.raises(TimeoutError),
    ):
        wait_serving(channel, timeout=0.3, interval=0.05)


async def test_the_async_wait_times_out_too() -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        with pytest.raises(TimeoutError):
            await wait_serving_async(channel, timeout=0.3, interval=0.05)


# gRPC's default channel waits 1 s (+-20 %) before its first reconnect: a wait that ends
# well inside that saw the server on a probe channel's own 20-100 ms schedule.
SOON_S = 0.6


def test_a_probe_channel_sees_a_server_that_starts_after_its_first_attempt_soon() -> None:
    port = free_port()
    with sync_probe_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(TimeoutError):  # tried (and failed) before the server listens
            wait_serving(channel, timeout=0.05, interval=0.01)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        try:
            started = time.monotonic()
            wait_serving(channel, timeout=10, interval=0.01)
            assert time.monotonic() - started < SOON_S
        finally:
            server.stop(None)


async def test_the_async_probe_channel_sees_it_soon_too() -> None:
    port = free_port()
    async with probe_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(TimeoutError):
            await wait_serving_async(channel, timeout=0.05, interval=0.01)
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # no stubs for it
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            started = asyncio.get_running_loop().time()
            await wait_serving_async(channel, timeout=10, interval=0.01)
            assert asyncio.get_running_loop().time() - started < SOON_S
        finally:
            await server.stop(None)
