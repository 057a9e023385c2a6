"""The container smoke test's pure parts: the wheelhouse's reading of requirements.lock
and the Compose file it derives from docker/compose.yaml (what it swaps, and that the
committed file keeps the upstream images)."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import yaml

from scripts.container_smoke import compose, images, wheelhouse
from switchboard_server.testing import free_port

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
