"""Fixtures for tests that run real Envoy processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard_server.mesh.topology import Topology, load_topology
from tests.support.mesh_up import EXTRA_CORS_ORIGIN, UpMesh, mesh_up

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def topology() -> Topology:
    return load_topology(ROOT / "envoy" / "topology.yaml")


@pytest.fixture(scope="session")
def shared_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpMesh]:
    """One `switchboard up` mesh (the default topology, plus one allowed CORS origin) for
    the modules that only call through it, each test in sessions of its own (chat, REST,
    the web page, and mTLS: its certificate rotation must not fail a call): started once
    instead of once per module. A test that kills, freezes or reconfigures part of a mesh
    starts its own."""
    env = {"SWITCHBOARD_MESH_CORS_ALLOWED_ORIGINS": json.dumps([EXTRA_CORS_ORIGIN])}
    with mesh_up(tmp_path_factory.mktemp("mesh-shared"), env) as up:
        yield up
