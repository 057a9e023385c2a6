"""A topology with a classification candidate, rendered for Compose and Kubernetes and
validated exactly as the committed renderings are (``test_deploy_validate.py``): every
Envoy config through ``envoy --mode validate`` (with the rollout mounts laid out as
``switchboard rollout --dir`` and the kubelet lay them out), each kustomize overlay
through ``kubernetes-validate --strict`` and the checks the schemas miss, the Compose
file through the compose-spec schema and ``docker-compose config -q``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from switchboard_server.deploy.render import render_files, write_files
from switchboard_server.deploy.variants import rollout_configmap, write_compose_rollout
from switchboard_server.mesh.rollout.state import ServicePolicy
from tests.support.deploy import default_settings, k8s_problems, topology_with_candidate
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
)
from tests.support.kubelet import write_configmap_volume

OVERLAYS = ("dev", "prod", "monitoring")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render-variants")
    settings = default_settings()
    topology = topology_with_candidate()
    for target in ("compose", "k8s"):
        write_files(render_files(target, topology, settings), out / target)
    write_compose_rollout(out / "compose", topology)
    return out


@pytest.fixture(scope="module")
def mounts(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificates and JWKS, and both rollout mounts: Compose's directory (with its
    relative ``current`` link) and Kubernetes' ConfigMap volume (the kubelet's layout)."""
    root = make_mounts(tmp_path_factory.mktemp("mounts-variants"))
    shutil.copytree(rendered / "compose" / "rollout", root / "rollout", symlinks=True)
    settings = default_settings()
    doc = rollout_configmap(
        topology_with_candidate(),
        "classification",
        ServicePolicy(weights={"candidate": 10}),
        settings.deploy.namespace,
    )
    write_configmap_volume(root / "rollout" / "classification", doc["data"])
    return root


def test_every_envoy_config_validates(rendered: Path, mounts: Path) -> None:
    configs = list(envoy_configs(rendered))
    # Compose: edge + 4 sidecars (classification-1 is the candidate); k8s: edge + 3, twice
    assert len(configs) == 5 + 8
    failures = envoy_validate_failures(configs, rendered, mounts, default_settings().mesh)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def built(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    scratch = tmp_path_factory.mktemp("kube-variants")
    return {o: kustomize(rendered / "k8s" / "overlays" / o, scratch) for o in OVERLAYS}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(
    built: dict[str, Path], overlay: str, version: str
) -> None:
    kubernetes_validate(built[overlay], version)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_no_problem_the_schemas_miss(built: dict[str, Path], overlay: str) -> None:
    docs = load_docs(built[overlay])
    assert k8s_problems(docs) == []
    maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    assert "classification-rollout" not in maps  # owned by `rollout --emit-configmap`
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert {"classification", "classification-candidate", "rollout-comparator"} <= set(deployments)
    for name, doc in deployments.items():
        volumes = doc["spec"]["template"]["spec"].get("volumes", [])
        required = {
            v["configMap"]["name"]
            for v in volumes
            if "configMap" in v and not v["configMap"].get("optional")
        }
        assert required <= maps, name
    candidate = deployments["classification-candidate"]["spec"]["template"]["metadata"]
    assert candidate["labels"]["switchboard.dev/variant"] == "candidate"
    if overlay == "prod":  # the candidate keeps its own floor; stable gets prod's
        hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
        assert hpas["classification"]["spec"]["minReplicas"] >= 2
        assert hpas["classification-candidate"]["spec"]["minReplicas"] == 1


def test_emitted_configmap_passes_kubernetes_validate(tmp_path: Path) -> None:
    doc = rollout_configmap(
        topology_with_candidate(),
        "classification",
        ServicePolicy(weights={"candidate": 10}, shadow={"candidate": 50}),
        default_settings().deploy.namespace,
    )
    path = tmp_path / "configmap.yaml"
    path.write_text(yaml.safe_dump(doc))
    kubernetes_validate(path, K8S_VERSIONS[-1])


def test_compose_file_passes_the_schema_and_docker_compose_config(rendered: Path) -> None:
    compose = yaml.safe_load((rendered / "compose" / "compose.yaml").read_text())
    assert compose_schema_errors(compose) == []
    done = docker_compose_config(rendered / "compose")
    assert done.returncode == 0, done.stdout + done.stderr
