"""Fixtures for tests that run real Envoy processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard_server.mesh.topology import Topology, load_topology

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def topology() -> Topology:
    return load_topology(ROOT / "envoy" / "topology.yaml")
