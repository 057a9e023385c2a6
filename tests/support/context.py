"""Helpers of the context-service tests: a real redis-server, settings, a running server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import redis

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.app import AppServer
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.context.settings import ContextSettings
from switchboard_server.testing import start_services, stop_process

STORES = ("sqlite", "redis")


def start_redis(port: int, directory: Path, password: str = "") -> subprocess.Popen[bytes]:
    """A real redis-server on 127.0.0.1:port, append-only with fsync always (with
    ``password``: clients must AUTH); ready on return."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (run scripts/install-system-deps.sh)")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(directory),
         *(["--requirepass", password] if password else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, password=password or None)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return proc
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    stop_process(proc)
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int


def context_settings(
    store: str, data_dir: Path, redis_url: str = "", prefix: str = "", **overrides: Any
) -> Settings:
    # BM25 alone unless a test asks for hybrid ranking (it loads the ONNX encoder: seconds).
    extra: dict[str, Any] = {"store": store, "hybrid": "off", **overrides}
    if store == "redis":
        extra |= {"redis_url": redis_url, "redis_key_prefix": prefix}
    return Settings(core=CoreSettings(data_dir=data_dir), context=ContextSettings(**extra))


@dataclass
class Running:
    server: AppServer
    port: int
    channel: grpc.aio.Channel
    stub: pb_grpc.ContextServiceAsyncStub


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """A started context server on port 0 and a channel to it; stopped on exit.

    On Redis, servers started from the same settings are replicas: each gets its own
    index directory unless the settings name one."""
    ctx = settings.context
    if ctx.store == "redis" and not ctx.index_dir:
        unique = settings.core.data_dir / "context" / f"index-{uuid.uuid4().hex[:8]}"
        settings = replace(settings, context=ctx.model_copy(update={"index_dir": str(unique)}))
    service = ServiceName.CONTEXT
    async with start_services(settings.core.data_dir, [service], settings=settings) as started:
        channel = started.channel(service)
        yield Running(
            started.servers[service],
            started.ports[service],
            channel,
            pb_grpc.ContextServiceStub(channel),
        )


async def knowledge_ids(server: Running, query: str) -> list[str]:
    """The document ids of the knowledge sources ``GetContext`` finds for ``query``."""
    reply = await server.stub.GetContext(
        pb.GetContextRequest(query=query, include_knowledge_base=True)
    )
    return [s.document_id for s in reply.sources if s.document_id]


async def seconds_until_found(
    server: Running, query: str, document_id: str, within_s: float
) -> float:
    """Ask ``server`` every 10 ms until ``document_id`` is among the knowledge found for
    ``query``; how long that took. Fails the test after ``within_s``."""
    started = time.monotonic()
    while document_id not in await knowledge_ids(server, query):
        waited = time.monotonic() - started
        assert waited < within_s, f"{document_id} not found within {within_s} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def server_env(settings: Any, port: int) -> dict[str, str]:
    """The environment of a ``python -m switchboard_server context`` on ``port`` with
    the store of ``settings`` (debug logs, no seeding, a large semantic cap)."""
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
        "SWITCHBOARD_CONTEXT_HYBRID": ctx.hybrid,
    }
    if ctx.store == "redis":
        env["SWITCHBOARD_CONTEXT_REDIS_URL"] = ctx.redis_url.get_secret_value()
        env["SWITCHBOARD_CONTEXT_REDIS_KEY_PREFIX"] = ctx.redis_key_prefix
    return env


def start_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start the context service in a child process, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "switchboard_server", "context"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
