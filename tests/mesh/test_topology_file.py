"""The topology file: shipped as package data, and every mistake in it names its field."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard_server.mesh.topology import (
    TopologyError,
    default_topology,
    load_topology,
    parse_topology,
)

ROOT = Path(__file__).parents[2]


@pytest.fixture
def raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(default_topology().read_text())
    return copy.deepcopy(document)


def test_the_default_topology_is_package_data_linked_from_envoy() -> None:
    packaged = Path(str(default_topology()))
    assert packaged.parent == ROOT / "server" / "switchboard_server" / "mesh"
    assert (ROOT / "envoy" / "topology.yaml").resolve() == packaged.resolve()
    topology = load_topology()
    assert set(topology.services) == {"classification", "context", "orchestration"}
    assert topology.services["orchestration"].calls == ("classification", "context")


@pytest.mark.parametrize("replicas", [-1, 0])
def test_a_replica_count_below_one_names_its_field(raw: dict[str, Any], replicas: int) -> None:
    raw["services"]["context"]["replicas"] = replicas
    with pytest.raises(TopologyError, match=r"^services\.context\.replicas: .*greater than"):
        parse_topology(raw)


@pytest.mark.parametrize("port", ["50052", 50052.5, 50052.0, True, None])
def test_a_non_integer_port_names_its_field(raw: dict[str, Any], port: object) -> None:
    raw["services"]["context"]["app_port"] = port
    with pytest.raises(TopologyError, match=r"^services\.context\.app_port: .*integer"):
        parse_topology(raw)


def test_a_port_out_of_range_names_its_field(raw: dict[str, Any]) -> None:
    raw["services"]["orchestration"]["egress_ports"]["context"] = 70000
    with pytest.raises(TopologyError, match=r"^services\.orchestration\.egress_ports\.context: "):
        parse_topology(raw)


def test_an_unknown_key_is_refused_not_ignored(raw: dict[str, Any]) -> None:
    raw["services"]["context"]["methods"]["AppendMemory"]["retries"] = 3
    with pytest.raises(
        TopologyError, match=r"^services\.context\.methods\.AppendMemory\.retries: unknown key"
    ):
        parse_topology(raw)


def test_every_problem_is_reported_at_once(raw: dict[str, Any]) -> None:
    raw["services"]["context"]["default"] = {"timeout_s": -1, "idempotent": "yes"}
    with pytest.raises(TopologyError) as raised:
        parse_topology(raw)
    assert "services.context.default.timeout_s:" in str(raised.value)
    assert "services.context.default.idempotent:" in str(raised.value)


def test_a_file_error_names_the_file(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["services"]["classification"]["replicas"] = "two"
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TopologyError, match=rf"^{path}: services\.classification\.replicas: "):
        load_topology(path)


def test_render_envoy_finds_the_packaged_topology_from_any_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", "render-envoy", "--out", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "edge.yaml" in written
    assert len(written) == 4  # the edge and one sidecar per service


def test_a_per_try_timeout_is_inherited_and_must_be_positive(raw: dict[str, Any]) -> None:
    raw["services"]["context"]["default"]["per_try_timeout_s"] = 0.3
    raw["services"]["context"]["methods"]["WarmupCache"]["per_try_timeout_s"] = 5.0
    del raw["services"]["context"]["methods"]["ClearMemory"]["per_try_timeout_s"]
    context = parse_topology(raw).services["context"]
    assert context.policy("GetMemoryStats").per_try_timeout_s == 0.3  # the default's
    assert context.policy("ClearMemory").per_try_timeout_s == 0.3  # listed, not set: inherited
    assert context.policy("WarmupCache").per_try_timeout_s == 5.0
    raw["services"]["context"]["methods"]["GetContext"]["per_try_timeout_s"] = 0
    with pytest.raises(
        TopologyError, match=r"^services\.context\.methods\.GetContext\.per_try_timeout_s: "
    ):
        parse_topology(raw)


def test_keyed_retry_is_for_unary_writes_only(raw: dict[str, Any]) -> None:
    """A keyed retry on an idempotent method, a stream or a whole service is refused,
    naming the field."""
    topology = parse_topology(raw)
    assert topology.services["context"].policy("AppendMemory").keyed_retry
    assert not topology.services["context"].policy("GetMemoryStats").keyed_retry
    cases = {
        ("classification", "ClassifyStream"): "ClassifyStream streams",
        ("orchestration", "ChatStream"): "ChatStream streams",
        ("context", "WarmupCache"): "only for a method with idempotent: false",
    }
    for (service, method), problem in cases.items():
        bad = copy.deepcopy(raw)
        bad["services"][service]["methods"][method]["keyed_retry"] = True
        with pytest.raises(TopologyError) as raised:
            parse_topology(bad)
        where = f"services.{service}.methods.{method}.keyed_retry: "
        assert str(raised.value).startswith(where), raised.value
        assert problem in str(raised.value)
    bad = copy.deepcopy(raw)
    bad["services"]["context"]["default"]["keyed_retry"] = True
    with pytest.raises(TopologyError, match=r"^services\.context\.default\.keyed_retry: "):
        parse_topology(bad)
    bad = copy.deepcopy(raw)
    bad["services"]["context"]["methods"]["AppendMemory"]["keyed_retry"] = "yes"
    with pytest.raises(TopologyError, match=r"AppendMemory\.keyed_retry: "):
        parse_topology(bad)
