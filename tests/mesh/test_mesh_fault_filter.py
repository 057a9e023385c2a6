"""The opt-in fault filter of the chaos suite (mesh setting ``fault_injection``): on
every sidecar's ingress before the router when on, nowhere when off, and Envoy accepts
the config. The chaos suite turns its faults on through ``/runtime_modify``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.render import render_all, write_configs
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology, make_plan

pytestmark = pytest.mark.mesh

FAULT = "envoy.filters.http.fault"


def _filters(config: dict[str, Any]) -> dict[str, list[str]]:
    found = {}
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        found[listener["name"]] = [f["name"] for f in hcm["http_filters"]]
    return found


async def test_fault_filter_is_opt_in_and_valid(topology: Topology, tmp_path: Path) -> None:
    settings = MeshSettings(fault_injection=True)
    plan = make_plan(topology.with_replicas({"classification": 2}), settings)
    configs = render_all(plan, settings)
    sidecars = [name for name in configs if name.endswith(".sidecar")]
    assert len(sidecars) >= 4
    for name in sidecars:
        filters = _filters(configs[name])
        assert FAULT in filters["ingress"], name
        assert filters["ingress"].index(FAULT) < filters["ingress"].index(
            "envoy.filters.http.router"
        )
        assert all(FAULT not in f for listener, f in filters.items() if listener != "ingress")
    assert all(FAULT not in f for f in _filters(configs["edge"]).values())

    path = write_configs({"classification-0.sidecar": configs["classification-0.sidecar"]},
                         tmp_path)["classification-0.sidecar"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *envoy_command(path, settings, validate=True),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()

    off = MeshSettings()
    for name, config in render_all(make_plan(topology, off), off).items():
        assert all(FAULT not in f for f in _filters(config).values()), name
