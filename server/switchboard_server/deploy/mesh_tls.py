"""mTLS and RBAC in the container targets: the local mesh's (:mod:`..mesh.security.mtls`), with
the certificates where a container finds them.

* Each Envoy mounts only its own identity's directory at
  ``/etc/switchboard/certs/<identity>/`` holding ``tls.crt``, ``tls.key`` and ``ca.crt``:
  Compose bind-mounts ``docker/certs/<identity>`` (``switchboard certs init --out
  docker/certs``); Kubernetes mounts the Secret ``switchboard-certs-<identity>``, the
  layout of a cert-manager ``Certificate``'s Secret (type ``kubernetes.io/tls`` plus
  ``ca.crt``), so cert-manager (or a ``kubectl create secret``) can fill it.
* The SDS files that point Envoy at them are rendered beside the Envoy config (in
  ``docker/envoy/``, in the ``envoy-<name>`` ConfigMap); Envoy watches the certificate
  directory, so a rotated Secret is picked up without a restart.
* Probes cannot present a client certificate: each sidecar's plaintext scrape listener
  also answers ``grpc.health.v1.Health/Check`` (that one method, nothing else of the
  app), forwarded to its app, so a probe still checks the sidecar and the app together.
"""

from __future__ import annotations

import os
from pathlib import Path

from switchboard_server.config import Settings
from switchboard_server.mesh.envoy_config import Config
from switchboard_server.mesh.security.certs import CA_DIR, TLS_KEY
from switchboard_server.mesh.security.mtls import (
    MeshTls,
    sds_documents,
    secure_edge,
    secure_sidecar,
)
from switchboard_server.mesh.topology import Plan, Replica

CONTAINER_CERTS_DIR = "/etc/switchboard/certs"
CERTS_SECRET_PREFIX = "switchboard-certs-"
COMPOSE_CERTS_DIR = "./certs"
HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"


def container_tls(settings: Settings, sds_dir: str) -> MeshTls | None:
    """The mesh's TLS as the containers see it; None with SWITCHBOARD_MESH_INSECURE."""
    mesh = settings.mesh
    if mesh.insecure:
        return None
    return MeshTls(Path(CONTAINER_CERTS_DIR), mesh.trust_domain, mesh.namespace, Path(sds_dir))


def identity_mount(identity: str) -> str:
    return f"{CONTAINER_CERTS_DIR}/{identity}"


def certs_secret(identity: str) -> str:
    return f"{CERTS_SECRET_PREFIX}{identity}"


def secure_envoys(
    configs: dict[str, Config], plan: Plan, replicas: dict[str, Replica], tls: MeshTls
) -> dict[str, Config]:
    """``configs`` (the edge and the given replicas' sidecars, by name) with mTLS and
    RBAC, each with the node SDS needs."""
    for name, replica in replicas.items():
        configs[name] = secure_sidecar(configs[name], plan, replica.service, tls)
        configs[name].setdefault("node", {"id": name, "cluster": replica.service})
    configs["edge"] = secure_edge(configs["edge"], plan, tls)
    configs["edge"].setdefault("node", {"id": "edge", "cluster": "edge"})
    return configs


def sds_files(identities: list[str], tls: MeshTls) -> dict[str, Config]:
    """Every SDS document of the identities, by file name (in ``tls.sds_dir``)."""
    files: dict[str, Config] = {}
    for identity in identities:
        for path, document in sds_documents(tls, identity).items():
            files[path.name] = document
    return files


def open_for_containers(root: Path, identities: list[str]) -> None:
    """Make each identity's directory readable by the Envoy of any container uid that
    mounts it (Envoy runs as 10001; a bind mount keeps the host owner): 0755 directories
    and a 0644 key. ``root`` itself is 0700, so on the host only its owner reaches them;
    the mesh CA's key (``<root>/ca``) is never mounted and stays 0600."""
    root.chmod(0o700)
    for identity in identities:
        directory = root / identity
        for path in [directory, *directory.rglob("*")]:
            if path.is_symlink() or path.parent.name == CA_DIR:
                continue
            if path.is_dir():
                path.chmod(0o755)
            elif path.name == TLS_KEY:
                os.chmod(path, 0o644)
