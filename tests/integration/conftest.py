"""Fixtures that run Switchboard services in-process on free loopback ports.

``services`` starts all three with a tmp data dir (through
:func:`switchboard_server.testing.start_services`, which tests call directly to replace
a service or override settings)::

    async def test_x(services: RunningServices) -> None:
        channel = services.channel(ServiceName.ORCHESTRATION)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from switchboard_server.config import ServiceName
from switchboard_server.testing import RunningServices, free_port, start_services, stop_process
from tests.support.classification import train_default_model
from tests.support.context import RedisServer, start_redis


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained classification models shared by every ``start_services`` of the session."""
    return tmp_path_factory.mktemp("classification-models")


@pytest.fixture
async def services(tmp_path: Path, model_cache: Path) -> AsyncIterator[RunningServices]:
    """All three services, in-process on free ports, with a tmp data dir."""
    async with start_services(tmp_path, model_cache=model_cache) as running:
        yield running


@pytest.fixture(scope="session")
def hwu64_models(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    """Directory holding the trained default (bundled HWU64, tfidf) model artifact,
    trained once per session (shared through ``model_cache``)."""
    data_dir = tmp_path_factory.mktemp("hwu64-seed") / ServiceName.CLASSIFICATION.value
    return train_default_model(data_dir, model_cache)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (append-only, fsync always), once per
    session, stopped by PID; tests keep apart by key prefix."""
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    try:
        yield RedisServer(f"redis://127.0.0.1:{port}/0", proc.pid)
    finally:
        stop_process(proc)
