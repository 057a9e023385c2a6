"""The real tools the deployment tests validate renderings with: envoy's validate mode
(with the container paths swapped for this host's copies), ``kubectl kustomize`` with an
empty KUBECONFIG, ``kubernetes-validate``, the compose-spec schema and
``docker-compose config``. Shared by ``tests/integration/test_deploy_validate.py`` (the
default topology) and ``test_deploy_variants.py`` (a topology with a variant)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from switchboard_server.mesh.addresses import CONTAINER_ASSET_ROOT
from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.settings import MeshSettings
from tests.support.deploy import MESH_PACKAGE, ROOT

SCHEMA = ROOT / "tests" / "support" / "schemas" / "compose-spec" / "compose-spec.json"
K8S_VERSIONS = ("1.30", "1.33")
NOT_IN_SCHEMAS = {"ServiceMonitor"}  # a CRD: kubernetes-validate has no schema for it


def tool(name: str, hint: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} missing: {hint}"
    return found


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def make_mounts(root: Path) -> Path:
    """What the containers mount: the edge's JWKS and every identity's certificates,
    from a `token init` and a `certs init --out` of this run."""
    cli = [sys.executable, "-m", "switchboard_client.cli"]
    auth = root / "auth"
    run([*cli, "token", "init", "--out", str(auth)]).check_returncode()
    shutil.copytree(auth / "jwks", root / "jwks")
    run([*cli, "certs", "init", "--out", str(root / "certs")]).check_returncode()
    return root


def envoy_configs(root: Path) -> Iterator[Path]:
    """Every Envoy config of the local, compose and k8s renderings under ``root``."""
    yield from sorted((root / "local").glob("*.yaml"))
    yield from sorted(
        p
        for p in (root / "compose" / "envoy").glob("*.yaml")
        if not p.name.endswith((".cert.yaml", ".ca.yaml"))  # SDS files, not configs
    )
    yield from sorted((root / "k8s").rglob("envoy/*.yaml"))


def on_this_host(path: Path, rendered: Path, mounts: Path) -> Path:
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


def envoy_validate_failures(
    configs: list[Path], rendered: Path, mounts: Path, mesh: MeshSettings
) -> list[str]:
    """``envoy --mode validate`` on each config; one line per failure."""
    failures = []
    for original in configs:
        path = on_this_host(original, rendered, mounts)
        done = run(envoy_command(path, mesh, validate=True))
        if done.returncode != 0 or "OK" not in done.stdout:
            failures.append(
                f"{original.relative_to(rendered)}: {done.stdout[-800:]}{done.stderr[-800:]}"
            )
    return failures


def kustomize(overlay: Path, scratch: Path) -> Path:
    """``kubectl kustomize overlay`` (no cluster involved) into a file under ``scratch``."""
    kubectl = tool("kubectl", "run `make tools` (scripts/install-kubectl.sh)")
    empty = scratch / "kubeconfig"
    empty.write_text("")
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(empty), "HOME": str(scratch)}
    done = run([kubectl, "kustomize", str(overlay)], env=env)
    assert done.returncode == 0, done.stderr
    path = scratch / f"{overlay.name}.yaml"
    path.write_text(done.stdout)
    return path


def kubernetes_validate(path: Path, version: str) -> None:
    """``kubernetes-validate --strict``: no error; only the CRDs we use lack a schema."""
    validate = tool("kubernetes-validate", "install the dev extra (make venv)")
    done = run([validate, "--strict", "--quiet", "-k", version, str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "ERROR" not in output, output
    for line in output.splitlines():
        assert any(kind in line for kind in NOT_IN_SCHEMAS), line


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def compose_schema_errors(compose: dict[str, Any]) -> list[str]:
    # The schema says draft-07 (its "$schema" lacks the trailing "#" jsonschema looks for).
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [e.message for e in validator.iter_errors(compose)]


def docker_compose_config(directory: Path) -> subprocess.CompletedProcess[str]:
    compose = tool("docker-compose", "run `make tools` (Debian package docker-compose)")
    return run([compose, "-f", "compose.yaml", "config", "-q"], cwd=directory)
