"""The plans and address plans of the container targets.

In Compose and Kubernetes an app and its sidecar share a network namespace (a Compose
service and the sidecar joined to it with ``network_mode: service:<app>``; a pod), so
every replica uses the topology's ports as they are, without the local mesh's per-replica
stride, and the sidecar finds its app on loopback. Callers find a service's sidecars by
DNS name, as ``STRICT_DNS`` clusters:

* Compose: one service per replica (``classification-0``, ``classification-1``, ...),
  each an endpoint of the callers' cluster, health-checked and ejected on its own. (A
  scaled Compose service would not do: a sidecar joined with ``network_mode`` shares the
  namespace of one container of the app service, not of each.)
* Kubernetes: the service's headless Service, whose name resolves to every ready pod's
  address; a scaled Deployment's new pods appear at the next DNS refresh. A variant
  (``classification-candidate``) has its own Deployment and headless Service.
"""

from __future__ import annotations

from switchboard_server.config import Settings
from switchboard_server.mesh.addresses import (
    CONTAINER_ASSET_ROOT,
    AddressPlan,
    endpoints_by_cluster,
)
from switchboard_server.mesh.topology import Plan, Topology, make_plan, variant_cluster

ANY_HOST = "0.0.0.0"
LOOPBACK = "127.0.0.1"


def container_plan(topology: Topology, settings: Settings) -> Plan:
    """The plan with the topology's ports for every replica (one namespace each)."""
    unstrided = settings.mesh.model_copy(update={"replica_port_stride": 0, "host": LOOPBACK})
    return make_plan(topology, unstrided)


def compose_addresses(plan: Plan, settings: Settings) -> AddressPlan:
    return AddressPlan(
        listen_host=ANY_HOST,
        app_host=LOOPBACK,
        endpoints=endpoints_by_cluster(plan, lambda r: (r.name, r.sidecar_port)),
        dns=True,
        dns_refresh_s=settings.deploy.dns_refresh_s,
        asset_root=CONTAINER_ASSET_ROOT,
    )


def k8s_addresses(plan: Plan, settings: Settings) -> AddressPlan:
    """Per service (and per variant: ``classification-candidate``) its headless Service."""
    endpoints = {
        variant_cluster(name, variant): ((variant_cluster(name, variant), group[0].sidecar_port),)
        for name, group in plan.replicas.items()
        for variant in plan.topology.services[name].variant_names()
    }
    return AddressPlan(
        listen_host=ANY_HOST,
        app_host=LOOPBACK,
        endpoints=endpoints,
        dns=True,
        dns_refresh_s=settings.deploy.dns_refresh_s,
        asset_root=CONTAINER_ASSET_ROOT,
    )
