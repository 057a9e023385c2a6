"""Where each Envoy listens and where it finds its upstreams: the address plan.

The same topology runs as local processes, as Docker Compose services and as Kubernetes
pods; what differs between them is only addressing. Locally every process is on
``127.0.0.1`` with its own ports; in Compose and Kubernetes an app and its sidecar share
one network namespace (a pod), so the sidecar still finds its app on loopback, while
callers find a service's sidecars by DNS name (a Compose service per replica, a headless
Kubernetes Service listing every pod), as ``STRICT_DNS`` clusters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from switchboard_server.mesh.topology import Plan, Replica

Endpoint = tuple[str, int]
# Where docker/envoy.Dockerfile puts the web page and the descriptor set.
CONTAINER_ASSET_ROOT = "/usr/share/switchboard"


@dataclass(frozen=True)
class AddressPlan:
    """How the Envoys of one target reach each other."""

    listen_host: str  # where the edge and each ingress listener bind
    app_host: str  # where a sidecar finds its app and the edge its front door
    # cluster (a service, or a service's variant: ``classification-candidate``) -> its
    # sidecars' ingress
    endpoints: Mapping[str, tuple[Endpoint, ...]]
    dns: bool = False  # endpoints are names: STRICT_DNS clusters, re-resolved
    dns_refresh_s: float = 5.0  # how often a DNS cluster re-resolves its names
    # Where the edge's Envoy reads the page (``<root>/web/``) and the REST descriptor set
    # (``<root>/api_descriptor.binpb``); None: this package's own files (local processes).
    # Containers: the Envoy image's copies (``CONTAINER_ASSET_ROOT``), so a rendering
    # names no path of the checkout it was rendered in.
    asset_root: str | None = None


def local_addresses(plan: Plan) -> AddressPlan:
    """``switchboard up``: every process on ``plan.host``, replicas by port."""
    return AddressPlan(
        listen_host=plan.host,
        app_host=plan.host,
        endpoints=endpoints_by_cluster(plan, lambda r: (plan.host, r.sidecar_port)),
    )


def endpoints_by_cluster(
    plan: Plan, endpoint: Callable[[Replica], Endpoint]
) -> dict[str, tuple[Endpoint, ...]]:
    """Each replica's endpoint under its variant's cluster (the service's for stable)."""
    clusters: dict[str, list[Endpoint]] = {}
    for replica in plan.all_replicas():
        clusters.setdefault(replica.cluster, []).append(endpoint(replica))
    return {name: tuple(group) for name, group in clusters.items()}
