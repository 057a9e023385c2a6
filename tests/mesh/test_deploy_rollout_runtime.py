"""The Kubernetes rollout policy on a real Envoy: a caller's sidecar with the rendered
runtime layers watches its ConfigMap volume, laid out as the kubelet lays it out, and a
ConfigMap update (the kubelet's swap of ``..data``) changes the weights and the shadow
share in the running Envoy: no restart, no new process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from switchboard_server.deploy.render import render_files
from switchboard_server.deploy.variants import ROLLOUT_MOUNT, rollout_configmap
from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.envoy_config import address
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
            seen = {}
        if all(seen.get(k) == v for k, v in want.items()):
            return
        time.sleep(0.1)
    raise AssertionError(f"runtime {seen} never showed {want}")


def test_a_configmap_update_reaches_the_callers_envoy_without_a_restart(tmp_path: Path) -> None:
    settings = default_settings()
    topology = topology_with_candidate()
    rendered = yaml.safe_load(
        render_files("k8s", topology, settings)["base/envoy/orchestration.yaml"]
    )
    layers = rendered["layered_runtime"]["layers"]
    mount = tmp_path / "mount"
    layers = yaml.safe_load(yaml.safe_dump(layers).replace(ROLLOUT_MOUNT, str(mount)))

    def publish(policy: ServicePolicy) -> None:
        doc = rollout_configmap(topology, "classification", policy, settings.deploy.namespace)
        write_configmap_volume(mount / "classification", doc["data"])

    publish(ServicePolicy(weights={"candidate": 10}))
    admin = free_port()
    config = tmp_path / "envoy.yaml"
    bootstrap = {
        "admin": {"address": address("127.0.0.1", admin)},
        "layered_runtime": {"layers": layers},
    }
    config.write_text(yaml.safe_dump(bootstrap))
    with (tmp_path / "envoy.log").open("wb") as log:
        process = subprocess.Popen(envoy_command(config, settings.mesh), stdout=log, stderr=log)
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
