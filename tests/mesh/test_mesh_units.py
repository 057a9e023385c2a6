"""Small pure pieces of the mesh: replica parsing, back-off, per-try timeouts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from switchboard_server.config import CoreSettings, Settings
from switchboard_server.mesh.commands import parse_replicas
from switchboard_server.mesh.processes import Child, ChildSpec, command_of, pid_alive
from switchboard_server.mesh.routes import per_try_timeout
from switchboard_server.mesh.runner import MeshRunner
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology, TopologyError, make_plan
from switchboard_server.observability.settings import ObservabilitySettings


def test_parse_replicas() -> None:
    assert parse_replicas(["classification=2", "context=3"]) == {
        "classification": 2,
        "context": 3,
    }
    for bad in ("classification", "classification=two", "=2"):
        with pytest.raises(TopologyError):
            Topology({}, ()).with_replicas(parse_replicas([bad]))


def test_unknown_or_zero_replicas_are_refused(topology: Topology) -> None:
    with pytest.raises(TopologyError, match="unknown service 'nope'"):
        topology.with_replicas({"nope": 2})
    with pytest.raises(TopologyError, match="at least 1"):
        topology.with_replicas({"context": 0})


def test_per_try_timeout_never_starves_a_slow_method() -> None:
    settings = MeshSettings(retry_per_try_timeout_s=1.0, retry_attempts=2)
    assert per_try_timeout(2.0, settings) == 1.0  # fast method: the setting
    assert per_try_timeout(30.0, settings) == 10.0  # slow one: its share of the timeout
    assert per_try_timeout(2.0, settings, 0.4) == 0.4  # the topology's own, when given
    assert per_try_timeout(0.3, settings, 0.4) == 0.3  # ...never past the method's timeout


def test_restart_backoff_doubles_caps_and_resets(topology: Topology, tmp_path: Path) -> None:
    mesh = MeshSettings(
        restart_backoff_initial_s=0.5, restart_backoff_max_s=3.0, restart_reset_after_s=30.0
    )
    settings = Settings(core=CoreSettings(data_dir=tmp_path), mesh=mesh)
    runner = MeshRunner(settings, make_plan(topology, mesh))
    child = Child(ChildSpec("x", "app", ["true"]), lambda name, line: None)
    child.started_at = time.monotonic()
    assert [runner._backoff(child) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    child.started_at = time.monotonic() - 31  # it had been up a while before dying
    assert runner._backoff(child) == 0.5


@pytest.mark.parametrize(("mesh_ratio", "expected"), [(None, 1.0), (0.25, 0.25)])
def test_the_local_mesh_samples_every_new_trace_in_its_apps_and_envoys(
    topology: Topology, tmp_path: Path, mesh_ratio: float | None, expected: float
) -> None:
    """`switchboard up` overrides the deployment default (10 %) so `switchboard traces`
    shows every turn; its own setting can lower that."""
    mesh = MeshSettings() if mesh_ratio is None else MeshSettings(trace_sample_ratio=mesh_ratio)
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path),
        observability=ObservabilitySettings(otlp_endpoint="", trace_sample_ratio=0.1),
        mesh=mesh,
    )
    runner = MeshRunner(settings, make_plan(topology, mesh))
    apps = [entry.spec for entry in runner.build() if entry.spec.role == "app"]
    assert apps
    assert {float(app.env["SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO"]) for app in apps} == {expected}
    configs = sorted((runner.dir / "envoy").glob("*.yaml"))
    assert len(configs) == 1 + len(apps)  # the edge and one sidecar per app
    sampling = set()
    for path in configs:
        for listener in yaml.safe_load(path.read_text())["static_resources"]["listeners"]:
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            sampling.add(hcm["tracing"]["random_sampling"]["value"])
    assert sampling == {expected * 100}


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)  # beyond pid_max on Linux


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
async def test_a_started_child_already_has_its_death_signal() -> None:
    """``start`` returns once ``setpriv`` has set the death signal and exec'd the
    command: a runner killed right after a start must not leave an orphan."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    for _ in range(5):
        child = Child(ChildSpec("sleeper", "test", sleeper), lambda name, line: None)
        await child.start()
        try:
            assert child.pid is not None
            assert command_of(child.pid) == sys.executable.encode()
        finally:
            await child.stop(5)
