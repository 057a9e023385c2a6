"""Fixtures that run Switchboard services in-process on free loopback ports.

``start_services`` (an async context manager) starts any of the three services with
a data dir of their own; orchestration is pointed straight at the peers it started
(no Envoy). Any service may be replaced by a test module (``modules=``) and every
settings part overridden. Servers are stopped on exit, even when a test fails.

The ``services`` fixture starts all three with a tmp data dir::

    async def test_x(services: RunningServices) -> None:
        channel = services.channel(ServiceName.ORCHESTRATION)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from switchboard_server.app import AppServer, create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.service import ServiceModule

ALL_SERVICES = (ServiceName.CLASSIFICATION, ServiceName.CONTEXT, ServiceName.ORCHESTRATION)


@dataclass
class RunningServices:
    """Started servers by service, their ports, and channels to them (closed on exit)."""

    settings: Settings
    servers: dict[ServiceName, AppServer]
    ports: dict[ServiceName, int]
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def target(self, service: ServiceName) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def channel(self, service: ServiceName) -> grpc.aio.Channel:
        """A new channel to ``service``, closed when the services stop."""
        channel = grpc.aio.insecure_channel(self.target(service))
        self._channels.append(channel)
        return channel

    async def stop(self, service: ServiceName) -> None:
        """Stop one service now (e.g. to see how the others degrade)."""
        await self.servers[service].stop(0)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        for server in reversed(list(self.servers.values())):
            await server.stop(0)


def with_parts(settings: Settings, **parts: Mapping[str, Any]) -> Settings:
    """``settings`` with fields of some parts replaced, e.g. ``orchestration={"x": 1}``."""
    updated = {
        name: getattr(settings, name).model_copy(update=dict(values))
        for name, values in parts.items()
    }
    return dataclasses.replace(settings, **updated)


@contextlib.asynccontextmanager
async def start_services(
    data_dir: Path,
    services: Collection[ServiceName] = ALL_SERVICES,
    *,
    settings: Settings | None = None,
    modules: Mapping[ServiceName, ServiceModule] | None = None,
    model_cache: Path | None = None,
) -> AsyncIterator[RunningServices]:
    """Start ``services`` on 127.0.0.1:0, orchestration pointed at the peers started here.

    ``data_dir`` is used when ``settings`` is not given (grace period 0 for fast stops).

    ``model_cache`` is a directory of trained classification models shared between
    starts: copied in before classification starts (so it loads instead of training)
    and updated afterwards.
    """
    base = settings or Settings(core=CoreSettings(data_dir=data_dir, grace_period_s=0.0))
    modules = modules or {}
    running = RunningServices(base, {}, {})
    models = base.core.data_dir_for(ServiceName.CLASSIFICATION) / "models"
    if model_cache is not None and ServiceName.CLASSIFICATION not in modules:
        _copy_models(model_cache, models)
    try:
        for service in (s for s in ALL_SERVICES if s in services and s is not ALL_SERVICES[2]):
            server, port = await create_server(
                base, service, "127.0.0.1:0", module=modules.get(service)
            )
            running.servers[service], running.ports[service] = server, port
        if ServiceName.ORCHESTRATION in services:
            peers: dict[str, Any] = {}
            if ServiceName.CLASSIFICATION in running.ports:
                peers["classification_target"] = running.target(ServiceName.CLASSIFICATION)
            if ServiceName.CONTEXT in running.ports:
                peers["context_target"] = running.target(ServiceName.CONTEXT)
            running.settings = with_parts(base, orchestration=peers)
            server, port = await create_server(
                running.settings,
                ServiceName.ORCHESTRATION,
                "127.0.0.1:0",
                module=modules.get(ServiceName.ORCHESTRATION),
            )
            running.servers[ServiceName.ORCHESTRATION] = server
            running.ports[ServiceName.ORCHESTRATION] = port
        await asyncio.gather(*(server.start() for server in running.servers.values()))
        if model_cache is not None and ServiceName.CLASSIFICATION not in modules:
            _copy_models(models, model_cache)
        yield running
    finally:
        await running.close()


def _copy_models(source: Path, destination: Path) -> None:
    if not source.is_dir():
        return
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.pkl"):
        if not (destination / path.name).exists():
            shutil.copy2(path, destination / path.name)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained classification models shared by every ``start_services`` of the session."""
    return tmp_path_factory.mktemp("classification-models")


@pytest.fixture
async def services(tmp_path: Path, model_cache: Path) -> AsyncIterator[RunningServices]:
    """All three services, in-process on free ports, with a tmp data dir."""
    async with start_services(tmp_path, model_cache=model_cache) as running:
        yield running
