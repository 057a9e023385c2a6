"""Helpers of the context-service tests: a real redis-server, settings, a running server."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis

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
    extra: dict[str, Any] = {"store": store, **overrides}
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
    """A started context server on port 0 and a channel to it; stopped on exit."""
    service = ServiceName.CONTEXT
    async with start_services(settings.core.data_dir, [service], settings=settings) as started:
        channel = started.channel(service)
        yield Running(
            started.servers[service],
            started.ports[service],
            channel,
            pb_grpc.ContextServiceStub(channel),
        )
