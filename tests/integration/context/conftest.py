"""Fixtures of the context-service tests: a real redis-server and a real context server.

``store_kind`` parametrises a test over both backends; the Redis server
(``redis_server``, tests/integration/conftest.py) is started once per session; each
test gets its own key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard_server.config import Settings
from tests.support.context import (
    STORES,
    Running,
    context_settings,
    running,
)


@pytest.fixture(
    params=[pytest.param(s, marks=[pytest.mark.redis] if s == "redis" else []) for s in STORES]
)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_settings(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Any:
    """``make_settings(**context_overrides) -> Settings`` for this test's backend."""
    url = ""
    if store_kind == "redis":
        url = request.getfixturevalue("redis_server").url
    prefix = f"t{uuid.uuid4().hex[:12]}:"

    def make(**overrides: Any) -> Settings:
        return context_settings(store_kind, tmp_path / "data", url, prefix, **overrides)

    return make


@pytest.fixture
async def ctx(make_settings: Any) -> AsyncIterator[Running]:
    """A context server with default settings (built-in knowledge base seeded)."""
    async with running(make_settings()) as server:
        yield server
