"""The container smoke test's pure parts: the wheelhouse's reading of requirements.lock,
the Compose file it derives from docker/compose.yaml (what it swaps, and that the
committed file keeps the upstream images), and its rollout: the candidate topology's
rendering, the rollout directory's modes and link, the counters it reads."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import pytest
import yaml

from scripts.container_smoke import checks, compose, images, rollout, wheelhouse
from switchboard_server.deploy.variants import ROLLOUT_MOUNT
from switchboard_server.mesh.rollout.commands import change_in
from switchboard_server.mesh.rollout.state import ensure_runtime
from switchboard_server.mesh.topology import parse_topology
from switchboard_server.testing import free_port
from tests.support.deploy import candidate_raw

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
COMPOSE = ROOT / "docker" / "compose.yaml"


def test_every_locked_package_is_one_block_with_its_hashes_and_no_marker() -> None:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==", LOCK.read_text(), re.M)
    blocks = wheelhouse.lock_entries(LOCK)
    assert [b.split("==", 1)[0] for b, _ in blocks] == pins
    for block, _ in blocks:
        assert "--hash=sha256:" in block, block
        assert ";" not in block.splitlines()[0], block  # pip would judge the marker itself


def test_entries_only_an_older_python_needs_are_added() -> None:
    older = [b.split("==")[0] for b in wheelhouse.only_for(LOCK, "3.11.2")]
    assert "async-timeout" in older  # python_full_version < '3.11.3'
    assert wheelhouse.only_for(LOCK, platform.python_version()) == []


def test_the_smoke_file_swaps_what_cannot_be_had_and_lists_it() -> None:
    smoke = compose.derive(COMPOSE, free_port)
    services = smoke.compose["services"]
    assert "grafana" not in services
    assert services["redis"]["image"] == images.SUBSTITUTES
    assert services["prometheus"]["image"] == images.SUBSTITUTES
    assert services["jaeger"]["image"] == images.APP
    assert services["jaeger"]["command"][:2] == ["switchboard", "trace-receiver"]
    assert services["jaeger"]["healthcheck"] == {"disable": True}  # nothing more: refused
    assert sorted(smoke.apps().values()) == ["classification", "context", "orchestration"]
    assert len(smoke.changes) >= 6
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            assert not volume.startswith("."), (name, volume)
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert smoke.published[("edge", 8080)] > 0


def test_the_committed_file_keeps_the_upstream_images() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("redis", "prometheus", "grafana", "jaeger"):
        assert "switchboard" not in services[name]["image"], (name, services[name]["image"])


def test_the_smoke_file_mounts_the_runs_own_jwks_and_certificates(tmp_path: Path) -> None:
    own = {"auth": tmp_path / "auth", "certs": tmp_path / "certs"}
    smoke = compose.derive(COMPOSE, free_port, own)
    edge = smoke.compose["services"]["edge"]["volumes"]
    assert f"{(tmp_path / 'auth').resolve()}/jwks:/etc/switchboard/jwks:ro" in edge
    assert f"{(tmp_path / 'certs').resolve()}/edge:/etc/switchboard/certs/edge:ro" in edge
    sidecar = smoke.compose["services"]["context-0"]["volumes"]
    assert f"{(tmp_path / 'certs').resolve()}/context:/etc/switchboard/certs/context:ro" in sidecar
    everything = [v for s in smoke.compose["services"].values() for v in s.get("volumes", [])]
    assert not [v for v in everything if "/docker/auth" in v or "/docker/certs" in v]


# -- the rollout the smoke test runs (scripts/container_smoke/rollout.py) ----------------


def test_the_candidate_topology_parses_and_renders_a_candidate_app_and_its_policy(
    tmp_path: Path,
) -> None:
    raw = rollout.candidate_topology()
    assert raw == candidate_raw()  # the deployment tests' candidate
    topology = parse_topology(raw)
    assert list(topology.services["classification"].variants) == ["candidate"]
    rendered, env = rollout.render(tmp_path)
    assert env["SWITCHBOARD_MESH_TOPOLOGY_FILE"] == str(tmp_path / "topology.yaml")
    smoke = compose.derive(rendered / "compose.yaml", free_port)
    services = smoke.compose["services"]
    apps = [name for name, service in smoke.apps().items() if service == "classification"]
    assert len(apps) == 2
    candidate = services[apps[1]]
    assert candidate["labels"]["switchboard.dev/variant"] == "candidate"
    for key, value in rollout.CANDIDATE_ENV.items():
        assert candidate["environment"][key] == value
    assert "SWITCHBOARD_CLASSIFICATION_TFIDF_C" not in services[apps[0]]["environment"]
    assert "rollout-comparator" in services
    callers = rollout.mounting(smoke.compose, ROLLOUT_MOUNT)
    assert callers == ["orchestration-0"]
    mount = next(v for v in services[callers[0]]["volumes"] if ROLLOUT_MOUNT in v)
    assert mount == f"{(rendered / 'rollout').resolve()}:{ROLLOUT_MOUNT}:ro"
    scrape = rendered / "prometheus/prometheus.yml"
    assert rollout.scrape_targets(scrape, "switchboard-app", "classification") == [
        "classification-0:15020",
        "classification-1:15020",
    ]
    assert rollout.scrape_targets(scrape, "switchboard-rollout") == ["rollout-comparator:15020"]


def test_the_rollout_directory_is_readable_by_the_sidecars_and_its_link_relative(
    tmp_path: Path,
) -> None:
    rendered, env = rollout.render(tmp_path)
    policy = rendered / "rollout"
    rollout.switchboard(
        env, "rollout", "promote", "classification", "candidate", "--dir", str(policy)
    )
    assert rollout.unreadable(policy) == []
    current = policy / "current"
    assert current.is_symlink()
    assert not os.readlink(current).startswith("/")
    assert (current / rollout.CANDIDATE_WEIGHT_KEY).read_text() == "10000"
    (current / rollout.CANDIDATE_WEIGHT_KEY).chmod(0o600)
    assert rollout.unreadable(policy) == [
        f"rollout/{os.readlink(current)}/{rollout.CANDIDATE_WEIGHT_KEY} -rw-------"
    ]


V = "switchboard_classification_variant_verdicts"
EXPOSITION = f"""\
# HELP {V}_total Verdicts by model variant.
# TYPE {V}_total counter
{V}_total{{variant="candidate",traffic="live",scope="in"}} 7.0
{V}_total{{variant="candidate",traffic="live",scope="out"}} 2.0
{V}_total{{variant="candidate",traffic="shadow",scope="in"}} 3.0
# HELP {V}_created Verdicts by model variant.
# TYPE {V}_created gauge
{V}_created{{variant="candidate",traffic="live",scope="in"}} 1.7e9
"""


def test_verdicts_are_summed_by_variant_and_traffic_and_deltas_taken() -> None:
    sums = rollout.sums(EXPOSITION, rollout.VERDICTS, ("variant", "traffic"))
    assert sums == {("candidate", "live"): 9.0, ("candidate", "shadow"): 3.0}
    before = rollout.Counts({("stable", "live"): 4.0}, 1.0)
    after = rollout.Counts({("stable", "live"): 4.0, ("candidate", "live"): 9.0}, 6.0)
    moved = after.minus(before)
    assert (moved.of("stable", "live"), moved.of("candidate", "live"), moved.compared) == (0, 9, 5)
    assert moved.of("candidate", "shadow") == 0


def test_status_needs_both_variants_with_calls_and_compared_answers() -> None:
    doc = {"variants": {"stable": {"calls": 5}, "candidate": {"calls": 3, "compared": 0}}}
    with pytest.raises(checks.CheckFailed, match="not yet both variants"):
        rollout.both_variants(json.dumps(doc))
    doc["variants"]["candidate"].update(compared=2, agreed_intent=2)
    said = rollout.both_variants(json.dumps(doc))
    assert said is not None
    assert "candidate 3 calls, 2 shadow answers compared" in said


def test_the_rollout_directory_is_readable_whatever_the_writers_umask(tmp_path: Path) -> None:
    """The sidecars (uid 10001) read the bind-mounted tree that the host's user writes."""
    topology = parse_topology(rollout.candidate_topology())
    old = os.umask(0o077)
    try:
        root = tmp_path / "rollout"
        ensure_runtime(root, topology)
        change_in(root, topology, "classification", "shadow", "candidate=100")
    finally:
        os.umask(old)
    assert rollout.unreadable(root) == []
