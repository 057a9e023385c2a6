"""Helpers of the deployment tests: default settings, the checks the Kubernetes schemas
miss, the call graph the NetworkPolicies admit, Envoy configs with addressing masked, a
topology with a model variant."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from switchboard_server.config import Settings, load_settings
from switchboard_server.mesh.addresses import CONTAINER_ASSET_ROOT
from switchboard_server.mesh.edge.web import WEB_DIR
from switchboard_server.mesh.topology import Topology, default_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]
MESH_PACKAGE = str(WEB_DIR.parent.resolve())  # where the local edge reads its files
Doc = dict[str, Any]


@contextmanager
def _no_switchboard_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("SWITCHBOARD_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def default_settings() -> Settings:
    """Every setting at its default, whatever the environment says (what `make render`
    renders with)."""
    with _no_switchboard_env():
        return load_settings()


# -- what the schemas miss --------------------------------------------------------------

ENUMS: dict[str, set[str]] = {
    "protocol": {"TCP", "UDP", "SCTP"},
    "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "restartPolicy": {"Always", "OnFailure", "Never"},
    "policyTypes": {"Ingress", "Egress"},
    "accessModes": {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"},
}
SERVICE_TYPES = {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}
STRATEGY_TYPES = {"RollingUpdate", "Recreate"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost", "Unconfined"}
METRIC_TARGET_TYPES = {"Utilization", "Value", "AverageValue"}


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def _pod_spec(doc: Doc) -> Doc | None:
    if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    return None


def _probe_problems(where: str, pod: Doc) -> list[str]:
    problems = []
    numbers = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    for container in pod["containers"]:
        names = {p["name"] for p in container.get("ports", []) if "name" in p}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if not probe:
                continue
            for handler in ("grpc", "httpGet", "tcpSocket"):
                if handler not in probe:
                    continue
                port = probe[handler]["port"]
                # A named port must be the probed container's; a number any container's
                # of the pod (they share its address).
                ok = port in names if isinstance(port, str) else port in numbers
                if not ok:
                    problems.append(
                        f"{where}: {container['name']}.{kind} probes port {port!r}, "
                        "which no container of the pod declares"
                    )
    return problems


def k8s_problems(docs: list[Doc]) -> list[str]:
    """Problems the OpenAPI schemas do not catch, one line each."""
    problems: list[str] = []
    for doc in docs:
        kind = doc.get("kind", "")
        where = f"{kind}/{doc.get('metadata', {}).get('name')}"
        for path, key, value in _walk(doc):
            allowed = ENUMS.get(key)
            if allowed is None:
                continue
            values = value if isinstance(value, list) else [value]
            for item in values:
                if item not in allowed:
                    problems.append(f"{where}: {path}.{key} = {item!r} not in {sorted(allowed)}")
        spec = doc.get("spec", {})
        if kind == "Service" and spec.get("type", "ClusterIP") not in SERVICE_TYPES:
            problems.append(f"{where}: type {spec['type']!r}")
        if kind == "PodDisruptionBudget":
            if "minAvailable" in spec and "maxUnavailable" in spec:
                problems.append(f"{where}: both minAvailable and maxUnavailable")
            if "minAvailable" not in spec and "maxUnavailable" not in spec:
                problems.append(f"{where}: neither minAvailable nor maxUnavailable")
        if kind == "Deployment":
            strategy = spec.get("strategy", {}).get("type", "RollingUpdate")
            if strategy not in STRATEGY_TYPES:
                problems.append(f"{where}: strategy {strategy!r}")
        if kind == "HorizontalPodAutoscaler":
            if spec["minReplicas"] > spec["maxReplicas"]:
                problems.append(f"{where}: minReplicas > maxReplicas")
            for metric in spec.get("metrics", []):
                target = metric.get("resource", {}).get("target", {}).get("type")
                if target not in METRIC_TARGET_TYPES:
                    problems.append(f"{where}: metric target type {target!r}")
        pod = _pod_spec(doc)
        if pod is None:
            continue
        selector = spec.get("selector", {}).get("matchLabels", {})
        labels = doc["spec"]["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{where}: the selector does not match the pod's labels")
        problems += _probe_problems(where, pod)
        seccomp = pod.get("securityContext", {}).get("seccompProfile", {}).get("type")
        if seccomp not in SECCOMP_TYPES:
            problems.append(f"{where}: seccompProfile {seccomp!r}")
        mounts_known = {v["name"] for v in pod.get("volumes", [])}
        mounts_known |= {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            name = f"{where}: container {container['name']}"
            security = container.get("securityContext", {})
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: root filesystem not read-only")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{name}: capabilities not all dropped")
            if not (
                security.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")
            ):
                problems.append(f"{name}: may run as root")
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                if set(resources.get(part, {})) != {"cpu", "memory"}:
                    problems.append(f"{name}: {part} must set cpu and memory")
            for env in container.get("env", []):
                if "value" in env and "valueFrom" in env:
                    problems.append(f"{name}: env {env['name']} has both value and valueFrom")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in mounts_known:
                    problems.append(f"{name}: mounts unknown volume {mount['name']!r}")
    return problems


# -- the call graph the NetworkPolicies admit ----------------------------------------------

NAME = "app.kubernetes.io/name"
ANYONE = "*"


def admitted_calls(docs: list[Doc], port_of: dict[str, int]) -> set[tuple[str, str]]:
    """(caller, callee) for each NetworkPolicy rule admitting a caller to the callee's
    port ``port_of[callee]``; a rule with no ``from`` admits ``*``."""
    calls = set()
    for doc in docs:
        if doc.get("kind") != "NetworkPolicy":
            continue
        callee = doc["spec"]["podSelector"]["matchLabels"][NAME]
        for rule in doc["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if port_of.get(callee) not in ports:
                continue
            sources = rule.get("from")
            if sources is None:
                calls.add((ANYONE, callee))
                continue
            for source in sources:
                if "podSelector" in source and "namespaceSelector" not in source:
                    calls.add((source["podSelector"]["matchLabels"][NAME], callee))
                else:
                    calls.add((f"namespace:{source}", callee))
    return calls


# -- Envoy configs without their addressing ----------------------------------------------

DISCOVERY_KEYS = ("type", "cluster_type", "load_assignment")
DEPLOY_ONLY = {"scrape", "envoy_admin", "local_metrics"}


ASSET_KEYS = ("filename", "proto_descriptor")


def _relative_asset_paths(node: Any) -> Any:
    """Every file path an Envoy config names, relative to its asset root."""
    roots = (f"{MESH_PACKAGE}/", f"{CONTAINER_ASSET_ROOT}/")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ASSET_KEYS and isinstance(value, str):
                node[key] = next((value[len(r) :] for r in roots if value.startswith(r)), value)
            else:
                _relative_asset_paths(value)
    elif isinstance(node, list):
        for item in node:
            _relative_asset_paths(item)
    return node


def without_addressing(config: Doc) -> Doc:
    """``config`` less what a target may change: listener and admin addresses, cluster
    discovery (static/DNS) and endpoints, the scrape listener and its clusters, and where
    the edge's files are (this package's, or the Envoy image's copies)."""
    config = _relative_asset_paths(copy.deepcopy(config))
    config["admin"].pop("address")
    resources = config["static_resources"]
    resources["listeners"] = [
        lst for lst in resources["listeners"] if lst["name"] not in DEPLOY_ONLY
    ]
    for listener in resources["listeners"]:
        listener.pop("address")
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] not in DEPLOY_ONLY]
    for cluster in resources["clusters"]:
        for key in DISCOVERY_KEYS:
            cluster.pop(key, None)
    return config


# -- a topology with a model variant -----------------------------------------------------

CANDIDATE_ENV = {"SWITCHBOARD_CLASSIFICATION_TFIDF_C": "2"}


def candidate_raw(replicas: int = 1) -> dict[str, Any]:
    """The default topology document with a classification ``candidate`` (its own env),
    split on Classify and ClassifyStream, mirrored on Classify (as in docs/rollouts.md)."""
    raw: dict[str, Any] = yaml.safe_load(default_topology().read_text())
    raw["services"]["classification"]["variants"] = {
        "candidate": {"replicas": replicas, "env": dict(CANDIDATE_ENV)}
    }
    raw["services"]["classification"]["rollout"] = {
        "split_methods": ["Classify", "ClassifyStream"],
        "shadow_methods": ["Classify"],
    }
    return raw


def topology_with_candidate(replicas: int = 1) -> Topology:
    """:func:`candidate_raw`, parsed."""
    return parse_topology(candidate_raw(replicas))
