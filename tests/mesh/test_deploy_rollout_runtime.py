"""The container targets' rollout policy on a real Envoy, with a caller's rendered
runtime layers: on Kubernetes it watches its ConfigMap volume, laid out as the kubelet
lays it out, and a ConfigMap update (the kubelet's swap of ``..data``) changes the
weights and the shadow share in the running Envoy; in Compose, the ``docker/rollout``
directory that ``switchboard rollout --dir`` changes (a swap of ``current``). No
restart, no new process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from switchboard_server.deploy.render import render_files
from switchboard_server.deploy.variants import (
    ROLLOUT_MOUNT,
    rollout_configmap,
    write_compose_rollout,
)
from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.envoy_config import address
from switchboard_server.mesh.rollout.commands import change_in
from switchboard_server.mesh.rollout.state import ServicePolicy
from switchboard_server.testing import free_port, stop_process
from tests.support.deploy import default_settings, topology_with_candidate
from tests.support.kubelet import write_configmap_volume

pytestmark = pytest.mark.mesh

WEIGHT = "rollout.classification.weight.classification-candidate"
STABLE_WEIGHT = "rollout.classification.weight.classification"
SHADOW = "rollout.classification.shadow.candidate"


def _runtime(admin: int) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{admin}/runtime", timeout=2)
    response.raise_for_status()
    entries: dict[str, Any] = response.json()["entries"]
    return {key: entry["final_value"] for key, entry in entries.items()}


def _load_success(admin: int) -> int:
    response = httpx.get(f"http://127.0.0.1:{admin}/stats?filter=^runtime.load_success$")
    return int(response.text.split(":")[1])


def _wait_for(admin: int, process: subprocess.Popen[bytes], want: dict[str, str]) -> None:
    deadline = time.monotonic() + 15
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert process.poll() is None, "envoy exited"
        try:
            seen = _runtime(admin)
        except httpx.HTTPError:
            seen = {}  # not up yet
        else:
            if all(seen.get(k) == v for k, v in want.items()):
                return
        time.sleep(0.1)
    raise AssertionError(f"runtime {seen} never showed {want}")


def _rendered_layers(target: str, path: str, mount: Path) -> list[Any]:
    """A rendered caller's runtime layers, the container mount swapped for ``mount``."""
    files = render_files(target, topology_with_candidate(), default_settings())
    layers = yaml.safe_load(files[path])["layered_runtime"]["layers"]
    text = yaml.safe_dump(layers).replace(ROLLOUT_MOUNT, str(mount))
    swapped: list[Any] = yaml.safe_load(text)
    return swapped


def _start_envoy(tmp_path: Path, layers: list[Any]) -> tuple[subprocess.Popen[bytes], int]:
    admin = free_port()
    config = tmp_path / "envoy.yaml"
    bootstrap = {
        "admin": {"address": address("127.0.0.1", admin)},
        "layered_runtime": {"layers": layers},
    }
    config.write_text(yaml.safe_dump(bootstrap))
    command = envoy_command(config, default_settings().mesh)
    with (tmp_path / "envoy.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=log), admin


def test_a_configmap_update_reaches_the_callers_envoy_without_a_restart(tmp_path: Path) -> None:
    settings = default_settings()
    topology = topology_with_candidate()
    mount = tmp_path / "mount"
    layers = _rendered_layers("k8s", "base/envoy/orchestration.yaml", mount)

    def publish(policy: ServicePolicy) -> None:
        doc = rollout_configmap(topology, "classification", policy, settings.deploy.namespace)
        write_configmap_volume(mount / "classification", doc["data"])

    publish(ServicePolicy(weights={"candidate": 10}))
    process, admin = _start_envoy(tmp_path, layers)
    try:
        _wait_for(admin, process, {WEIGHT: "1000", STABLE_WEIGHT: "9000", SHADOW: "0"})
        loads = _load_success(admin)
        publish(ServicePolicy(weights={"candidate": 50}, shadow={"candidate": 100}))
        _wait_for(admin, process, {WEIGHT: "5000", STABLE_WEIGHT: "5000", SHADOW: "100"})
        publish(ServicePolicy())  # rollback
        _wait_for(admin, process, {WEIGHT: "0", STABLE_WEIGHT: "10000", SHADOW: "0"})
        assert _load_success(admin) >= loads + 2  # reloaded in place, twice
        assert process.poll() is None
    finally:
        stop_process(process)


def test_rollout_dir_reaches_the_compose_callers_envoy_without_a_restart(tmp_path: Path) -> None:
    topology = topology_with_candidate()
    root = write_compose_rollout(tmp_path / "docker", topology)
    assert root is not None
    layers = _rendered_layers("compose", "envoy/orchestration-0.sidecar.yaml", root)
    process, admin = _start_envoy(tmp_path, layers)
    try:
        _wait_for(admin, process, {WEIGHT: "0", STABLE_WEIGHT: "10000", SHADOW: "0"})
        change_in(root, topology, "classification", "set", "candidate=10")
        _wait_for(admin, process, {WEIGHT: "1000", STABLE_WEIGHT: "9000"})
        change_in(root, topology, "classification", "shadow", "candidate=100")
        _wait_for(admin, process, {WEIGHT: "1000", SHADOW: "100"})
        change_in(root, topology, "classification", "rollback")
        _wait_for(admin, process, {WEIGHT: "0", STABLE_WEIGHT: "10000", SHADOW: "0"})
        assert process.poll() is None
    finally:
        stop_process(process)


def test_a_configmap_created_after_the_pod_started_still_reaches_envoy(tmp_path: Path) -> None:
    """The volume is optional: the pod starts (all on stable) with an empty mount, and
    the first `rollout ... --emit-configmap | kubectl apply` lands without a restart."""
    settings = default_settings()
    topology = topology_with_candidate()
    mount = tmp_path / "mount"
    (mount / "classification").mkdir(parents=True)
    process, admin = _start_envoy(
        tmp_path, _rendered_layers("k8s", "base/envoy/orchestration.yaml", mount)
    )
    try:
        _wait_for(admin, process, {})  # its admin answers
        assert WEIGHT not in _runtime(admin)  # the routes' defaults: all on stable
        policy = ServicePolicy(weights={"candidate": 25})
        doc = rollout_configmap(topology, "classification", policy, settings.deploy.namespace)
        write_configmap_volume(mount / "classification", doc["data"])
        _wait_for(admin, process, {WEIGHT: "2500", STABLE_WEIGHT: "7500"})
    finally:
        stop_process(process)
