"""Model variants in the container targets: the rollout policy at the callers' sidecars
and the shadow comparator (``docs/rollouts.md``, "Compose and Kubernetes").

The routes are the local mesh's (:mod:`switchboard_server.mesh.rollout.variants`: one
cluster per variant, a sticky weighted split, request mirroring); what differs is where
a caller's Envoy finds the runtime layer that holds the weights and shadow shares:

* **Compose**: a directory beside ``compose.yaml`` (``docker/rollout/``), bind-mounted
  read-only into every caller's sidecar at :data:`ROLLOUT_MOUNT`. ``switchboard rollout
  ... --dir docker/rollout`` writes it with the local code (:mod:`.mesh.rollout.state`):
  a new tree, then a relative ``current`` symlink renamed over the old one, which Envoy
  watches through the bind mount. The layer is the local one (``current``, ``envoy``).
* **Kubernetes**: a ConfigMap per service with variants (``<service>-rollout``, one key
  per runtime key) mounted as a directory at ``<ROLLOUT_MOUNT>/<service>``. The kubelet
  writes a ConfigMap volume with its AtomicWriter: the keys in a ``..<timestamp>``
  directory, a ``..data`` symlink to it, and one ``key -> ..data/key`` symlink each; an
  update writes a new timestamped directory and renames a fresh symlink over ``..data``.
  That rename is the swap Envoy's disk layer watches, so its ``symlink_root`` is
  ``..data`` (no subdirectory: the keys are the files). The ConfigMap is not in the
  kustomization (an update must not roll the pods, and a re-applied kustomization must
  not reset a rollout): ``switchboard rollout ... --emit-configmap | kubectl apply -f -``
  owns it, and the volume is ``optional`` so pods start, all on stable, before it exists.

The comparator runs as its own container (Compose service / Deployment + Service
:data:`COMPARATOR`); the apps send it each answer as a UDP datagram by DNS name, and
Prometheus scrapes its metrics on the deployment's scrape port.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from switchboard_server.config import Settings
from switchboard_server.deploy.k8s_objects import (
    NAME,
    PART_OF,
    PROJECT,
    SCRAPE,
    container_security,
    deployment,
    meta,
)
from switchboard_server.mesh.envoy_config import Config
from switchboard_server.mesh.rollout.state import ServicePolicy, ensure_runtime
from switchboard_server.mesh.rollout.variants import runtime_values
from switchboard_server.mesh.topology import Topology

Doc = dict[str, Any]
ROLLOUT_MOUNT = "/etc/switchboard/rollout"
COMPOSE_ROLLOUT_DIR = "./rollout"  # beside compose.yaml
COMPARATOR = "rollout-comparator"
VARIANT_LABEL = "switchboard.dev/variant"
POLICY_ANNOTATION = "switchboard.dev/rollout-policy"
KUBELET_DATA_LINK = "..data"  # the kubelet AtomicWriter's symlink to the current payload
RUNTIME_LAYER = "rollout"  # the local layer's name (mesh/rollout/variants.runtime_layer)


def with_variants(topology: Topology) -> list[str]:
    """The services that declare variants."""
    return [name for name, spec in topology.services.items() if spec.variants]


def callees_with_variants(topology: Topology, service: str) -> list[str]:
    """The callees of ``service`` whose variants its sidecar splits between."""
    spec = topology.services.get(service)
    if spec is None:
        return []
    return [c for c in spec.calls if topology.services[c].variants]


def comparator_address(settings: Settings) -> str:
    """Where the apps of a service with variants send their answers (UDP, by DNS)."""
    return f"{COMPARATOR}:{settings.mesh.rollout_comparator_port}"


def comparator_command(settings: Settings) -> list[str]:
    """The local runner's comparator, listening on the container's address; metrics on
    the deployment's scrape port (the one port Prometheus reaches in every pod)."""
    mesh = settings.mesh
    return [
        "python",
        "-m",
        "switchboard_server.mesh",
        "rollout-comparator",
        "--host",
        "0.0.0.0",
        "--port",
        str(mesh.rollout_comparator_port),
        "--metrics-port",
        str(settings.deploy.scrape_port),
        "--max-pending",
        str(mesh.rollout_comparator_max_pending),
    ]


def comparator_healthcheck(settings: Settings) -> list[str]:
    """Compose's check of the comparator: its metrics answer (the app image's own
    HEALTHCHECK is a gRPC health check the comparator does not serve)."""
    url = f"http://127.0.0.1:{settings.deploy.scrape_port}/metrics"
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"
    return ["CMD", "python", "-c", probe]


# -- Kubernetes ------------------------------------------------------------------------


def rollout_configmap_name(service: str) -> str:
    return f"{service}-rollout"


def rollout_mount(service: str) -> str:
    return f"{ROLLOUT_MOUNT}/{service}"


def kubelet_runtime_layers(config: Config, callees: list[str]) -> Config:
    """``config`` with the local rollout layer replaced by one disk layer per callee
    with variants, each watching the ``..data`` symlink of its ConfigMap's mount."""
    layers = config["layered_runtime"]["layers"]
    at = next(i for i, layer in enumerate(layers) if layer["name"] == RUNTIME_LAYER)
    layers[at : at + 1] = [
        {
            "name": f"{RUNTIME_LAYER}-{callee}",
            "disk_layer": {"symlink_root": f"{rollout_mount(callee)}/{KUBELET_DATA_LINK}"},
        }
        for callee in callees
    ]
    return config


def rollout_volumes(callees: list[str]) -> tuple[list[Doc], list[Doc]]:
    """The pod volumes and the Envoy container's mounts of the callees' policies."""
    volumes = [
        {
            "name": f"rollout-{callee}",
            "configMap": {"name": rollout_configmap_name(callee), "optional": True},
        }
        for callee in callees
    ]
    mounts = [
        {"name": f"rollout-{callee}", "mountPath": rollout_mount(callee), "readOnly": True}
        for callee in callees
    ]
    return volumes, mounts


def rollout_configmap(
    topology: Topology, service: str, policy: ServicePolicy, namespace: str
) -> Doc:
    """The policy of ``service`` as the ConfigMap its callers' sidecars mount: one key
    per runtime key (the values ``switchboard rollout`` writes locally), the policy
    itself as an annotation (what ``rollout status`` reports)."""
    spec = topology.services[service]
    values = runtime_values(spec, policy.weights, policy.shadow)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": rollout_configmap_name(service),
            "namespace": namespace,
            "labels": {NAME: rollout_configmap_name(service), PART_OF: PROJECT},
            "annotations": {POLICY_ANNOTATION: json.dumps(asdict(policy), sort_keys=True)},
        },
        "data": {key: str(value) for key, value in values.items()},
    }


def policy_from_configmap(doc: Doc) -> ServicePolicy:
    """The policy a ConfigMap of :func:`rollout_configmap` carries (its annotation)."""
    raw = doc.get("metadata", {}).get("annotations", {}).get(POLICY_ANNOTATION)
    return ServicePolicy(**json.loads(raw)) if raw else ServicePolicy()


def label_variant(doc: Doc, variant: str) -> Doc:
    """A workload document with :data:`VARIANT_LABEL` on it and on its pods."""
    doc["metadata"]["labels"][VARIANT_LABEL] = variant
    template = doc.get("spec", {}).get("template")
    if template is not None:
        template["metadata"]["labels"][VARIANT_LABEL] = variant
    return doc


ANSWERS = "answers"  # the comparator's UDP port's name


def comparator_docs(settings: Settings, senders: list[str]) -> list[Doc]:
    """The comparator's Deployment (one replica: a join needs both halves of a request
    in one process), its Service (a stable virtual IP the apps' datagrams go to) and a
    NetworkPolicy admitting the answers of ``senders``' pods and Prometheus' scrape."""
    d = settings.deploy
    udp = settings.mesh.rollout_comparator_port
    container = {
        "name": "comparator",
        "image": d.app_image,
        "command": comparator_command(settings),
        "env": [{"name": "SWITCHBOARD_LOG_FORMAT", "value": "json"}],
        "ports": [
            {"name": ANSWERS, "containerPort": udp, "protocol": "UDP"},
            {"name": SCRAPE, "containerPort": d.scrape_port, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/metrics", "port": SCRAPE},
            "periodSeconds": 10,
        },
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": SCRAPE},
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        # as small as a sidecar: it counts datagrams
        "resources": {
            "requests": {"cpu": d.envoy_cpu_request, "memory": d.envoy_memory_request},
            "limits": {"cpu": d.envoy_cpu_limit, "memory": d.envoy_memory_limit},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    workload = deployment(d, COMPARATOR, [container], volumes, scrape_path="/metrics")
    # One at a time, also during an update: two would split a request's halves.
    workload["spec"] = {"replicas": 1, **workload["spec"], "strategy": {"type": "Recreate"}}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(COMPARATOR),
        "spec": {
            "selector": {NAME: COMPARATOR},
            "ports": [
                {"name": ANSWERS, "port": udp, "targetPort": ANSWERS, "protocol": "UDP"},
                {"name": SCRAPE, "port": d.scrape_port, "targetPort": SCRAPE},
            ],
        },
    }
    monitoring = {"kubernetes.io/metadata.name": d.monitoring_namespace}
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(COMPARATOR),
        "spec": {
            "podSelector": {"matchLabels": {NAME: COMPARATOR}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {NAME: s}}} for s in senders],
                    "ports": [{"protocol": "UDP", "port": udp}],
                },
                {
                    "from": [{"namespaceSelector": {"matchLabels": monitoring}}],
                    "ports": [{"protocol": "TCP", "port": d.scrape_port}],
                },
            ],
        },
    }
    return [workload, service, policy]


def comparator_monitor() -> Doc:
    """The monitoring overlay's ServiceMonitor of the comparator's metrics."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(COMPARATOR),
        "spec": {
            "selector": {"matchLabels": {NAME: COMPARATOR}},
            "endpoints": [{"port": SCRAPE, "path": "/metrics", "interval": "15s"}],
        },
    }


def write_compose_rollout(out_dir: Path, topology: Topology) -> Path | None:
    """A Compose rendering's rollout directory (``<out_dir>/rollout``) with the current
    policy (kept if there is one, else all on stable), written by the local code so the
    sidecars' bind mount exists and is the user's; None without variants."""
    if not with_variants(topology):
        return None
    root = out_dir / COMPOSE_ROLLOUT_DIR
    ensure_runtime(root, topology)
    return root
