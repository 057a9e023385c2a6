"""With its conversation log on Redis (shared), orchestration runs two replicas behind
the edge, balanced, health-checked and ejected like every other service, and a keyed
Chat is retried there; ``--replicas`` still decides when given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard_server.mesh.__main__ import main

pytestmark = pytest.mark.mesh


def render(out: Path, *args: str) -> dict[str, Any]:
    with pytest.raises(SystemExit) as done:
        main(["render-envoy", "--out", str(out), *args])
    assert done.value.code == 0
    return {p.stem: yaml.safe_load(p.read_text()) for p in out.glob("*.yaml")}


def edge_cluster(configs: dict[str, Any], name: str) -> dict[str, Any]:
    clusters = configs["edge"]["static_resources"]["clusters"]
    return next(c for c in clusters if c["name"] == name)


def endpoints(cluster: dict[str, Any]) -> list[int]:
    return [e["endpoint"]["address"]["socket_address"]["port_value"]
            for group in cluster["load_assignment"]["endpoints"]
            for e in group["lb_endpoints"]]  # fmt: skip


def find_named(node: Any, name: str) -> dict[str, Any]:
    """The first mapping named ``name`` anywhere in a config."""
    if isinstance(node, dict):
        if node.get("name") == name:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            try:
                return find_named(item, name)
            except LookupError:
                pass
    raise LookupError(name)


def test_a_shared_log_brings_a_second_orchestration_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path / "data"))
    single = render(tmp_path / "sqlite")
    assert "orchestration-1.sidecar" not in single
    assert "orchestration-1" not in str(single)
    assert len(endpoints(edge_cluster(single, "orchestration"))) == 1

    monkeypatch.setenv("SWITCHBOARD_ORCHESTRATION_STORE", "redis")
    shared = render(tmp_path / "redis")
    cluster = edge_cluster(shared, "orchestration")
    assert len(set(endpoints(cluster))) == 2
    assert cluster["lb_policy"] == "LEAST_REQUEST"
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == (
        "switchboard.orchestration.v1.OrchestrationService"
    )
    assert cluster["outlier_detection"]["consecutive_local_origin_failure"] >= 1
    keyed = find_named(shared["edge"], "orchestration.Chat.keyed")
    policy = keyed["route"]["retry_policy"]
    assert keyed["route"]["cluster"] == "orchestration"
    assert "reset" in policy["retry_on"]
    assert policy["num_retries"] >= 1
    assert policy["retry_host_predicate"][0]["name"].endswith("previous_hosts")

    chosen = render(tmp_path / "one", "--replicas", "orchestration=1")
    assert len(endpoints(edge_cluster(chosen, "orchestration"))) == 1
