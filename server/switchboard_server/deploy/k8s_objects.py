"""The Kubernetes objects :mod:`.k8s` assembles: Deployment, Service, HPA, PDB,
NetworkPolicy, the Redis StatefulSet and the ServiceMonitors, as plain documents."""

from __future__ import annotations

from typing import Any

from switchboard_server.deploy.settings import DeploySettings

Doc = dict[str, Any]
NAME = "app.kubernetes.io/name"
PART_OF = "app.kubernetes.io/part-of"
PROJECT = "switchboard"
GRPC = "grpc"
SCRAPE = "scrape"
REDIS = "redis"
REDIS_PORT = 6379
REDIS_UID = 999  # the redis image's user
REDIS_RESOURCES: Doc = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "512Mi"},
}
REDIS_STORAGE = "1Gi"
H2C = "kubernetes.io/h2c"  # the Service's appProtocol for cleartext HTTP/2 (gRPC)


def meta(name: str) -> Doc:
    return {"name": name, "labels": {NAME: name, PART_OF: PROJECT}}


def container_security() -> Doc:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security(uid: int) -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(
    d: DeploySettings, name: str, containers: list[Doc], volumes: list[Doc], *, scrape_path: str
) -> Doc:
    """No ``replicas``: the HPA owns the count (its minReplicas is the topology's)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name),
        "spec": {
            "selector": {"matchLabels": {NAME: name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": {NAME: name, PART_OF: PROJECT},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(d.scrape_port),
                        "prometheus.io/path": scrape_path,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security(d.run_as_user),
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }


def pod_service(d: DeploySettings, name: str, port: int, *, headless: bool) -> Doc:
    """Headless: DNS lists every ready pod, the callers' sidecars' endpoints."""
    spec: Doc = {
        "selector": {NAME: name},
        "ports": [
            {"name": GRPC, "port": port, "targetPort": GRPC, "appProtocol": H2C},
            {"name": SCRAPE, "port": d.scrape_port, "targetPort": SCRAPE},
        ],
    }
    if headless:
        spec = {"clusterIP": "None", **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name), "spec": spec}


def hpa(d: DeploySettings, name: str, minimum: int) -> Doc:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": max(d.hpa_max_replicas, minimum),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": d.hpa_cpu_percent},
                    },
                }
            ],
        },
    }


def pdb(name: str) -> Doc:
    """maxUnavailable, not minAvailable: a drain can always go on with one replica."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {NAME: name}}},
    }


def network_policy(
    name: str, port: int, callers: list[str] | None, *, scrape: tuple[str, int] | None
) -> Doc:
    """Ingress to ``port`` from the pods of ``callers`` only (None: from anywhere), and
    with ``scrape`` (namespace, port) to that port from that namespace."""
    rule: Doc = {"ports": [{"protocol": "TCP", "port": port}]}
    if callers is not None:
        rule["from"] = [{"podSelector": {"matchLabels": {NAME: c}}} for c in callers]
    rules = [rule]
    if scrape is not None:
        namespace, scrape_port = scrape
        rules.append(
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": scrape_port}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name),
        "spec": {
            "podSelector": {"matchLabels": {NAME: name}},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def redis(d: DeploySettings, client: str) -> list[Doc]:
    """A one-replica StatefulSet with an append-only file on its volume, its Service and
    a NetworkPolicy admitting ``client``'s pods only."""
    probe = {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5}
    container = {
        "name": REDIS,
        "image": d.redis_image,
        "command": ["redis-server", "--appendonly", "yes", "--appendfsync", "always"],
        "ports": [{"name": REDIS, "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "resources": REDIS_RESOURCES,
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(REDIS),
        "spec": {
            "serviceName": REDIS,
            "replicas": 1,
            "selector": {"matchLabels": {NAME: REDIS}},
            "template": {
                "metadata": {"labels": {NAME: REDIS, PART_OF: PROJECT}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(REDIS_UID),
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": REDIS_STORAGE}},
                    },
                }
            ],
        },
    }
    redis_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(REDIS),
        "spec": {
            "selector": {NAME: REDIS},
            "ports": [{"name": REDIS, "port": REDIS_PORT, "targetPort": REDIS}],
        },
    }
    return [statefulset, redis_service, network_policy(REDIS, REDIS_PORT, [client], scrape=None)]


def service_monitors(names: list[str], *, without_app: str) -> list[Doc]:
    """Per pod both paths of its scrape port (the ``without_app`` pod: Envoy's only)."""
    monitors = []
    for name in names:
        endpoints = [{"port": SCRAPE, "path": "/stats/prometheus", "interval": "15s"}]
        if name != without_app:
            endpoints.append({"port": SCRAPE, "path": "/metrics", "interval": "15s"})
        monitors.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": meta(name),
                "spec": {"selector": {"matchLabels": {NAME: name}}, "endpoints": endpoints},
            }
        )
    return monitors
