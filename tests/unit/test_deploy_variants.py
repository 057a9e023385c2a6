"""Model variants in the Compose and Kubernetes renderings (docs/rollouts.md, "Compose
and Kubernetes"): a workload per variant with its env, the callers' split and mirror on
DNS clusters, the rollout runtime layer from a mounted ConfigMap (Kubernetes) or the
``docker/rollout`` directory (Compose), the comparator, and `switchboard rollout`
writing the policy for both."""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from switchboard_server.classification.answers import AnswerReporter
from switchboard_server.classification.verdict import Verdict
from switchboard_server.deploy.render import render_files
from switchboard_server.deploy.variants import (
    POLICY_ANNOTATION,
    comparator_healthcheck,
    write_compose_rollout,
)
from switchboard_server.mesh.rollout.commands import rollback_hook
from switchboard_server.mesh.rollout.state import read_policies
from switchboard_server.testing import free_port
from tests.support.deploy import (
    ANYONE,
    CANDIDATE_ENV,
    NAME,
    admitted_calls,
    candidate_raw,
    default_settings,
    k8s_problems,
    topology_with_candidate,
)

Doc = dict[str, Any]
VARIANT = "switchboard.dev/variant"


@functools.cache
def _files(target: str) -> dict[str, str]:
    return render_files(target, topology_with_candidate(), default_settings())


def _base() -> list[Doc]:
    files = _files("k8s")
    paths = yaml.safe_load(files["base/kustomization.yaml"])["resources"]
    return [d for p in paths for d in yaml.safe_load_all(files[f"base/{p}"]) if d]


def _find(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _containers(deployment: Doc) -> dict[str, Doc]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _egress_routes(config: Doc, callee: str) -> dict[str, Doc]:
    listener = next(
        x for x in config["static_resources"]["listeners"] if x["name"] == f"egress_{callee}"
    )
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    return {r["match"].get("path", "").rsplit("/", 1)[-1]: r for r in routes}


def _runtime_keys_read(config: Doc) -> set[str]:
    """Every rollout runtime key a caller's routes read."""
    keys = set()
    for route in _egress_routes(config, "classification").values():
        action = route["route"]
        split = action.get("weighted_clusters")
        if split:
            keys |= {f"{split['runtime_key_prefix']}.{c['name']}" for c in split["clusters"]}
        for mirror in action.get("request_mirror_policies", []):
            keys.add(mirror["runtime_fraction"]["runtime_key"])
    return keys


def _rollout(tmp: Path, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`switchboard rollout ARGV` with the candidate's topology file (and nothing else of
    this environment's SWITCHBOARD_* settings)."""
    topology_file = tmp / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(candidate_raw()))
    env = {"SWITCHBOARD_MESH_TOPOLOGY_FILE": str(topology_file), "PATH": "/usr/bin:/bin"}
    env["SWITCHBOARD_DATA_DIR"] = str(tmp / "data")
    return subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", "rollout", *argv],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


# -- Kubernetes ----------------------------------------------------------------------------


def test_k8s_runs_each_variant_as_its_own_deployment_with_the_variants_env() -> None:
    docs = _base()
    assert k8s_problems(docs) == []
    stable = _find(docs, "Deployment", "classification")
    candidate = _find(docs, "Deployment", "classification-candidate")
    pod = candidate["spec"]["template"]
    assert pod["metadata"]["labels"][VARIANT] == "candidate"
    assert candidate["spec"]["selector"]["matchLabels"] == {NAME: "classification-candidate"}
    assert stable["spec"]["template"]["metadata"]["labels"][VARIANT] == "stable"
    env = _env(_containers(candidate)["app"])
    assert env["SWITCHBOARD_CLASSIFICATION_VARIANT"] == "candidate"
    assert env["SWITCHBOARD_CLASSIFICATION_COMPARATOR_ADDRESS"] == "rollout-comparator:9920"
    assert CANDIDATE_ENV.items() <= env.items()
    assert _env(_containers(stable)["app"])["SWITCHBOARD_CLASSIFICATION_VARIANT"] == "stable"
    assert "SWITCHBOARD_CLASSIFICATION_TFIDF_C" not in _env(_containers(stable)["app"])
    # The service's identity and Envoy config: its certificate Secret, its ConfigMap.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["certs"]["secret"]["secretName"] == "switchboard-certs-classification"
    assert volumes["envoy-config"]["configMap"]["name"] == "envoy-classification"
    service = _find(docs, "Service", "classification-candidate")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {NAME: "classification-candidate"}
    assert (
        _find(docs, "HorizontalPodAutoscaler", "classification-candidate")["spec"]["minReplicas"]
        == 1
    )
    assert _find(docs, "PodDisruptionBudget", "classification-candidate")


def test_k8s_callers_split_on_dns_clusters_with_the_policy_from_a_mounted_configmap() -> None:
    files = _files("k8s")
    config = yaml.safe_load(files["base/envoy/orchestration.yaml"])
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters["classification-candidate"]["load_assignment"]["endpoints"][0]
    address = endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address["address"] == "classification-candidate"
    kind = clusters["classification-candidate"]["cluster_type"]["typed_config"]["@type"]
    assert kind.endswith("DnsCluster")
    routes = _egress_routes(config, "classification")
    assert routes["Classify"]["route"]["weighted_clusters"]["header_name"]
    assert [m["cluster"] for m in routes["Classify"]["route"]["request_mirror_policies"]] == [
        "classification-candidate"
    ]
    assert "weighted_clusters" not in routes["AddExamples"]["route"]
    layers = {x["name"]: x for x in config["layered_runtime"]["layers"]}
    assert layers["rollout-classification"]["disk_layer"] == {
        "symlink_root": "/etc/switchboard/rollout/classification/..data"
    }
    # The orchestration pod mounts the ConfigMap there (optional: all on stable before
    # the first `rollout ... --emit-configmap | kubectl apply -f -`) ...
    docs = _base()
    pod = _find(docs, "Deployment", "orchestration")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["rollout-classification"]["configMap"] == {
        "name": "classification-rollout",
        "optional": True,
    }
    envoy = _containers(_find(docs, "Deployment", "orchestration"))["envoy"]
    assert {
        "name": "rollout-classification",
        "mountPath": "/etc/switchboard/rollout/classification",
        "readOnly": True,
    } in envoy["volumeMounts"]
    # ... which is no generated (hashed) ConfigMap: a policy change rolls no pod.
    for kustomization in ("base", "overlays/dev"):
        text = files[f"{kustomization}/kustomization.yaml"]
        assert "classification-rollout" not in text
    # Services nobody with variants calls have no rollout layer.
    context = yaml.safe_load(files["base/envoy/context.yaml"])
    assert [x["name"] for x in context["layered_runtime"]["layers"]] == ["static", "admin"]


def test_k8s_network_policies_admit_the_call_graph_and_the_comparator_its_senders() -> None:
    settings = default_settings()
    topology = topology_with_candidate()
    docs = _base()
    port_of = {name: spec.sidecar_port for name, spec in topology.services.items()}
    port_of |= {"classification-candidate": port_of["classification"]}
    port_of |= {"edge": settings.mesh.edge_port, "redis": 6379}
    port_of |= {"rollout-comparator": settings.mesh.rollout_comparator_port}
    calls = {(a, b) for a, spec in topology.services.items() for b in spec.calls}
    expected = calls | {(a, "classification-candidate") for a, b in calls if b == "classification"}
    expected |= {("edge", name) for name in topology.edge_routes}  # stable only
    expected |= {(ANYONE, "edge"), ("context", "redis")}
    expected |= {(s, "rollout-comparator") for s in ("classification", "classification-candidate")}
    assert ("orchestration", "classification-candidate") in expected
    assert admitted_calls(docs, port_of) == expected
    comparator = _find(docs, "NetworkPolicy", "rollout-comparator")
    assert comparator["spec"]["ingress"][0]["ports"] == [
        {"protocol": "UDP", "port": settings.mesh.rollout_comparator_port}
    ]


def test_k8s_runs_the_comparator_and_monitoring_scrapes_it() -> None:
    settings = default_settings()
    docs = _base()
    deployment = _find(docs, "Deployment", "rollout-comparator")
    assert deployment["spec"]["replicas"] == 1  # a join needs both halves in one process
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _containers(deployment)["comparator"]
    assert container["image"] == settings.deploy.app_image
    assert container["command"][2:4] == ["switchboard_server.mesh", "rollout-comparator"]
    service = _find(docs, "Service", "rollout-comparator")
    assert {p["protocol"] for p in service["spec"]["ports"] if p["name"] == "answers"} == {"UDP"}
    monitors = yaml.safe_load_all(_files("k8s")["overlays/monitoring/servicemonitors.yaml"])
    names = {m["metadata"]["name"]: m for m in monitors}
    assert names["rollout-comparator"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "classification-candidate" in names


def test_emitted_configmap_carries_exactly_the_keys_the_callers_routes_read(
    tmp_path: Path,
) -> None:
    def emit(*argv: str, stdin: str = "") -> Doc:
        done = _rollout(tmp_path, [*argv, "--emit-configmap"], stdin)
        assert done.returncode == 0, done.stderr
        doc: Doc = yaml.safe_load(done.stdout)
        return doc

    first = emit("set", "classification", "candidate=10")
    assert first["kind"] == "ConfigMap"
    assert first["metadata"]["name"] == "classification-rollout"
    assert first["metadata"]["namespace"] == "switchboard"
    config = yaml.safe_load(_files("k8s")["base/envoy/orchestration.yaml"])
    assert set(first["data"]) == _runtime_keys_read(config)
    assert first["data"]["rollout.classification.weight.classification-candidate"] == "1000"
    # From the live ConfigMap: the change keeps what it does not touch.
    second = emit(
        "shadow", "classification", "candidate=50", "--from-configmap", "-",
        stdin=yaml.safe_dump(first),
    )  # fmt: skip
    assert second["data"]["rollout.classification.shadow.candidate"] == "50"
    assert second["data"]["rollout.classification.weight.classification-candidate"] == "1000"
    policy = json.loads(second["metadata"]["annotations"][POLICY_ANNOTATION])
    assert policy["weights"] == {"candidate": 10}
    assert policy["shadow"] == {"candidate": 50}
    back = emit("rollback", "classification", "--from-configmap", "-", stdin=yaml.safe_dump(second))
    assert back["data"]["rollout.classification.weight.classification"] == "10000"
    assert back["data"]["rollout.classification.shadow.candidate"] == "0"
    # A file that is no rollout ConfigMap, or a variant the topology lacks: a clear error.
    bad_annotation = {"metadata": {"annotations": {POLICY_ANNOTATION: "{not json"}}}
    unknown = {"metadata": {"annotations": {POLICY_ANNOTATION: '{"weights": {"nope": 5}}'}}}
    for stdin, says in (
        ("key: [unclosed", "not a rollout ConfigMap"),
        (yaml.safe_dump(bad_annotation), "not a rollout ConfigMap"),
        (yaml.safe_dump(unknown), "unknown variant 'nope'"),
    ):
        argv = ["set", "classification", "candidate=5", "--emit-configmap", "--from-configmap", "-"]
        done = _rollout(tmp_path, argv, stdin)
        assert done.returncode == 2, done.stderr
        assert says in done.stderr
        assert done.stdout == ""


def test_watch_rolls_back_a_container_target_through_its_dir_or_apply_command(
    tmp_path: Path,
) -> None:
    """`rollout watch --prometheus URL` rolls back where the target keeps its policy: a
    Compose rendering's directory (``--dir``) or, on Kubernetes, a command that takes
    the all-on-stable ConfigMap on stdin (``--apply-command 'kubectl apply -f -'``)."""
    topology = topology_with_candidate()
    settings = default_settings()
    root = write_compose_rollout(tmp_path, topology)
    assert root is not None
    done = _rollout(tmp_path, ["set", "classification", "candidate=40", "--dir", str(root)])
    assert done.returncode == 0, done.stderr
    watch = SimpleNamespace(service="classification", dir=str(root), apply_command=None)
    rollback_hook(cast(Any, watch), settings, topology)("auto-rollback: WORSE - p99")
    policy = read_policies(root)["classification"]
    assert (policy.weights, policy.last_change) == ({}, "auto-rollback: WORSE - p99")
    weight = root / "current" / "envoy" / "rollout" / "classification" / "weight"
    assert (weight / "classification-candidate").read_text() == "0"

    applied = tmp_path / "applied.yaml"
    command = f"sh -c 'cat > {applied}'"
    watch = SimpleNamespace(service="classification", dir=None, apply_command=command)
    rollback_hook(cast(Any, watch), settings, topology)("auto-rollback: WORSE - errors")
    doc = yaml.safe_load(applied.read_text())
    assert doc["metadata"]["name"] == "classification-rollout"
    assert doc["data"]["rollout.classification.weight.classification"] == "10000"
    assert doc["data"]["rollout.classification.shadow.candidate"] == "0"
    annotation = json.loads(doc["metadata"]["annotations"][POLICY_ANNOTATION])
    assert annotation["last_change"] == "auto-rollback: WORSE - errors"
    # A failing apply is not a silent success: watch sees the error.
    failing = SimpleNamespace(service="classification", dir=None, apply_command="false")
    with pytest.raises(subprocess.CalledProcessError):
        rollback_hook(cast(Any, failing), settings, topology)("auto-rollback: x")
    # Without --prometheus the admin ports of a container target are out of reach.
    done = _rollout(tmp_path, ["watch", "classification", "candidate", "--dir", str(root)])
    assert done.returncode == 2
    assert "needs --prometheus" in done.stderr


# -- Compose -----------------------------------------------------------------------------


def test_compose_runs_the_variant_the_comparator_and_mounts_the_policy_dir() -> None:
    files = _files("compose")
    services = yaml.safe_load(files["compose.yaml"])["services"]
    candidate = services["classification-1-app"]
    assert candidate["environment"]["SWITCHBOARD_CLASSIFICATION_VARIANT"] == "candidate"
    assert CANDIDATE_ENV.items() <= candidate["environment"].items()
    assert candidate["environment"]["SWITCHBOARD_CLASSIFICATION_COMPARATOR_ADDRESS"] == (
        "rollout-comparator:9920"
    )
    assert "rollout-comparator" in candidate["depends_on"]
    assert candidate["labels"] == {VARIANT: "candidate"}
    assert services["classification-1"]["labels"] == {VARIANT: "candidate"}
    assert services["classification-0-app"]["labels"] == {VARIANT: "stable"}
    comparator = services["rollout-comparator"]
    assert comparator["command"][3] == "rollout-comparator"
    assert comparator["read_only"] is True
    assert "./rollout:/etc/switchboard/rollout:ro" in services["orchestration-0"]["volumes"]
    assert not any("rollout" in v for v in services["context-0"]["volumes"])
    config = yaml.safe_load(files["envoy/orchestration-0.sidecar.yaml"])
    layers = {x["name"]: x for x in config["layered_runtime"]["layers"]}
    assert layers["rollout"]["disk_layer"] == {
        "symlink_root": "/etc/switchboard/rollout/current",
        "subdirectory": "envoy",
    }
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    assert {"classification", "classification-candidate"} <= clusters
    prometheus = yaml.safe_load(files["prometheus/prometheus.yml"])
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    targets = jobs["switchboard-rollout"]["static_configs"][0]["targets"]
    assert targets == ["rollout-comparator:15020"]


def test_compose_comparator_healthcheck_passes_on_a_running_comparator() -> None:
    """The comparator's Compose healthcheck (its metrics answer), run against a real
    comparator; and it fails when nothing listens."""
    settings = default_settings()
    metrics, udp = free_port(), free_port()
    deploy = settings.deploy.model_copy(update={"scrape_port": metrics})
    check = comparator_healthcheck(dataclasses.replace(settings, deploy=deploy))
    assert check[0] == "CMD"
    probe = [sys.executable, *check[2:]]
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0
    argv = [sys.executable, "-m", "switchboard_server.mesh", "rollout-comparator", "--port",
            str(udp), "--metrics-port", str(metrics)]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            deadline = time.monotonic() + 20
            while subprocess.run(probe, capture_output=True, timeout=30).returncode != 0:
                assert time.monotonic() < deadline, "the comparator never answered its check"
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_compose_rollout_dir_is_written_by_render_and_changed_by_rollout_dir(
    tmp_path: Path,
) -> None:
    root = write_compose_rollout(tmp_path, topology_with_candidate())
    assert root == tmp_path / "rollout"
    assert (root / "current").is_symlink()
    assert not Path((root / "current").readlink()).is_absolute()  # valid in the container
    done = _rollout(tmp_path, ["set", "classification", "candidate=10", "--dir", str(root)])
    assert done.returncode == 0, done.stderr
    tree = root / "current" / "envoy"
    written = {
        ".".join(p.relative_to(tree).parts): p.read_text() for p in tree.rglob("*") if p.is_file()
    }
    config = yaml.safe_load(_files("compose")["envoy/orchestration-0.sidecar.yaml"])
    assert set(written) == _runtime_keys_read(config)
    assert written["rollout.classification.weight.classification-candidate"] == "1000"
    assert read_policies(root)["classification"].weights == {"candidate": 10}
    # the local mesh's policy is untouched
    assert not (tmp_path / "data" / "mesh" / "rollout").exists()


def test_the_default_topology_renders_no_rollout_parts() -> None:
    settings = default_settings()
    from switchboard_server.mesh.topology import load_topology

    files = render_files("compose", load_topology(settings.mesh.topology_file), settings)
    assert "rollout" not in files["compose.yaml"]
    assert write_compose_rollout(Path("/nonexistent"), load_topology()) is None


# -- the apps find the comparator by name -------------------------------------------------


def test_answers_go_to_the_comparator_by_dns_name_resolved_once_not_per_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    verdict = cast(
        Verdict, SimpleNamespace(intent="alarm_set", hierarchy=SimpleNamespace(l1="alarm"))
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        reporter = AnswerReporter(f"localhost:{port}", "candidate")
        for i in range(50):
            reporter.report(f"r{i}", verdict, shadow=True)
        datagram = json.loads(receiver.recv(2048))
        reporter.close()
    # One lookup for 50 answers: a Classify never waits on DNS (but a moved comparator
    # is found again after resolve_every_s).
    assert lookups == ["localhost"]
    assert datagram == {
        "id": "r0", "variant": "candidate", "shadow": True, "intent": "alarm_set", "l1": "alarm"
    }  # fmt: skip
    nowhere = AnswerReporter("no-such-comparator.invalid:9920", "candidate")
    nowhere.report("r2", verdict, shadow=False)  # dropped, never raised
    nowhere.report("r3", verdict, shadow=False)
    assert lookups == ["localhost", "no-such-comparator.invalid"]
    nowhere.close()
