"""Redis down: the context service answers UNAVAILABLE (retryable), never crashes, and
after Redis is back every acknowledged write is there (kill -9 of redis-server itself)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.app import create_server
from switchboard_server.config import ServiceName
from switchboard_server.context.module import SERVICE_NAME
from switchboard_server.testing import free_port, stop_process
from tests.support.context import (
    Running,
    context_settings,
    running,
    start_redis,
)


async def until_ok(ctx: Running, session: str) -> pb.GetMemoryStatsResponse:
    deadline = time.monotonic() + 10
    while True:
        try:
            return await ctx.stub.GetMemoryStats(
                pb.GetMemoryStatsRequest(session_id=session), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


pytestmark = pytest.mark.redis


async def test_redis_kill_9_then_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path)
    settings = context_settings(
        "redis", tmp_path / "data", f"redis://127.0.0.1:{port}/0", "outage:",
        redis_timeout_s=1.0,
    )  # fmt: skip
    try:
        async with running(settings) as ctx:
            for i in range(20):
                await ctx.stub.AppendMemory(
                    pb.AppendMemoryRequest(
                        session_id="s-outage",
                        entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_SEMANTIC, content=f"f{i}")],
                    )
                )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

            calls: tuple[tuple[Callable[..., Awaitable[Any]], Any], ...] = (
                (ctx.stub.GetContext, pb.GetContextRequest(query="f1", session_id="s-outage")),
                (ctx.stub.AppendMemory, pb.AppendMemoryRequest(
                    session_id="s-outage",
                    entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_SEMANTIC, content="lost")])),
            )  # fmt: skip
            for call, request in calls:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(request, timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE

            proc = start_redis(port, tmp_path)
            stats = await until_ok(ctx, "s-outage")
            assert stats.memory_stats.semantic_count == 20
            reply = await ctx.stub.GetContext(
                pb.GetContextRequest(query="f19", session_id="s-outage")
            )
            assert [s.content for s in reply.sources] == ["f19"]
    finally:
        stop_process(proc)


async def test_not_serving_until_redis_is_up(tmp_path: Path) -> None:
    port = free_port()
    settings = context_settings(
        "redis", tmp_path / "data", f"redis://127.0.0.1:{port}/0", "late:", redis_timeout_s=0.5
    )
    server, grpc_port = await create_server(settings, ServiceName.CONTEXT, "127.0.0.1:0")
    proc = None
    starting = asyncio.create_task(server.start())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            await asyncio.sleep(0.5)
            before = await health.Check(request, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.ContextServiceStub(channel).GetContext(
                    pb.GetContextRequest(query="retry"), timeout=5
                )
            proc = start_redis(port, tmp_path)
            await asyncio.wait_for(starting, 30)
            after = await health.Check(request, timeout=5)
            reply = await pb_grpc.ContextServiceStub(channel).GetContext(
                pb.GetContextRequest(query="how does switchboard retry failed calls?",
                                     include_knowledge_base=True), timeout=5,
            )  # fmt: skip
        assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert after.status == health_pb2.HealthCheckResponse.SERVING
        assert reply.sources[0].document_id == "retries"  # seeded once Redis was up
    finally:
        starting.cancel()
        await server.stop(0)
        if proc is not None:
            stop_process(proc)


async def _health_becomes(
    health: health_pb2_grpc.HealthStub, service: str, status: int, timeout_s: float
) -> float:
    """Seconds until ``service`` reports ``status`` (TimeoutError after ``timeout_s``)."""
    started = time.monotonic()
    request = health_pb2.HealthCheckRequest(service=service)
    while True:
        reply = await health.Check(request, timeout=5)
        if reply.status == status:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{service!r} still {reply.status} after {timeout_s} s")
        await asyncio.sleep(0.05)


async def test_health_follows_redis_down_and_back(tmp_path: Path) -> None:
    """Redis stops: the service reports NOT_SERVING within its check interval (so the
    sidecars route away from it), and SERVING again once Redis is back."""
    port = free_port()
    proc = start_redis(port, tmp_path)
    settings = context_settings(
        "redis", tmp_path / "data", f"redis://127.0.0.1:{port}/0", "health:",
        redis_timeout_s=0.5, store_check_interval_s=0.2, store_check_timeout_s=0.3,
    )  # fmt: skip
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    try:
        async with running(settings) as ctx:
            health = health_pb2_grpc.HealthStub(ctx.channel)
            await _health_becomes(health, SERVICE_NAME, serving, 5)
            stop_process(proc)
            down_after = await _health_becomes(health, SERVICE_NAME, not_serving, 5)
            overall = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="s"), timeout=5)

            proc = start_redis(port, tmp_path)
            await _health_becomes(health, SERVICE_NAME, serving, 10)
            stats = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="s"))
    finally:
        stop_process(proc)

    # one interval, one check's timeout, plus slack for a loaded machine
    assert down_after < 0.2 + 0.3 + 1.0
    assert overall.status == not_serving  # probes of the whole server see it too
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert stats.memory_stats.semantic_count == 0
