"""Every acknowledged append survives kill -9 of a real ``python -m switchboard_server``.

Both backends. Writers append in a loop until the server is SIGKILLed mid-stream;
after a restart on the same store, every entry whose AppendMemory returned OK is
there (at most the one in-flight append per writer may also be there). The
server's own log output is checked for session ids and memory text in clear.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.testing import free_port, stop_process, wait_serving_async

WRITERS = 6
TARGET_ACKS = 150


def server_env(settings: Any, port: int) -> dict[str, str]:
    ctx = settings.context
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(settings.core.data_dir),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_LOG_LEVEL": "debug",
        "SWITCHBOARD_CONTEXT_STORE": ctx.store,
        "SWITCHBOARD_CONTEXT_SEMANTIC_CAP": "100000",
        "SWITCHBOARD_CONTEXT_SEED_DEFAULT_KNOWLEDGE": "false",
    }
    if ctx.store == "redis":
        env["SWITCHBOARD_CONTEXT_REDIS_URL"] = ctx.redis_url.get_secret_value()
        env["SWITCHBOARD_CONTEXT_REDIS_KEY_PREFIX"] = ctx.redis_key_prefix
    return env


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "switchboard_server", "context"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def writer(
    stub: pb_grpc.ContextServiceAsyncStub, w: int, acked: list[list[int]], enough: asyncio.Event
) -> None:
    i = 0
    while True:
        request = pb.AppendMemoryRequest(
            session_id=f"durable-{w}",
            entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_SEMANTIC, content=f"secret w{w}n{i}")],
        )
        try:
            await stub.AppendMemory(request, timeout=5)
        except grpc.aio.AioRpcError:
            return
        acked[w].append(i)
        if sum(map(len, acked)) >= TARGET_ACKS:
            enough.set()
        i += 1


async def test_acknowledged_appends_survive_kill_9(make_settings: Any, tmp_path: Path) -> None:
    env = server_env(make_settings(), free_port())
    target = f"127.0.0.1:{env['SWITCHBOARD_PORT']}"
    log = tmp_path / "server.log"
    acked: list[list[int]] = [[] for _ in range(WRITERS)]
    proc = start(env, log)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            await wait_serving_async(channel, proc)
            stub = pb_grpc.ContextServiceStub(channel)
            enough = asyncio.Event()
            tasks = [asyncio.create_task(writer(stub, w, acked, enough)) for w in range(WRITERS)]
            await asyncio.wait_for(enough.wait(), 60)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert sum(map(len, acked)) >= TARGET_ACKS

        proc = start(env, log)
        async with grpc.aio.insecure_channel(target) as channel:
            await wait_serving_async(channel, proc)
            stub = pb_grpc.ContextServiceStub(channel)
            for w, done in enumerate(acked):
                stats = await stub.GetMemoryStats(
                    pb.GetMemoryStatsRequest(session_id=f"durable-{w}")
                )
                assert stats.memory_stats.semantic_count in (len(done), len(done) + 1)
                replies = await asyncio.gather(
                    *(
                        stub.GetContext(
                            pb.GetContextRequest(query=f"w{w}n{i}", session_id=f"durable-{w}")
                        )
                        for i in done
                    )
                )
                found = [[s.content for s in r.sources] for r in replies]
                assert found == [[f"secret w{w}n{i}"] for i in done]
    finally:
        stop_process(proc)

    output = log.read_text()
    assert "memory.appended" in output  # debug logging was on: the check below means something
    assert "durable-" not in output
    assert "secret" not in output
