"""The edge's routes and cluster for the front door (health and reflection).

``grpc.health.v1.Health`` and server reflection at the edge go to the front door
(:mod:`switchboard_server.frontdoor`), which answers for every exposed service. Health
probes are exempt from the edge rate limit: a busy edge must not fail its own
liveness probes. ``Watch`` is a stream that lasts as long as the caller wants, so its
route has no timeout of its own; a caller's ``grpc-timeout`` still bounds it (capped).
"""

from __future__ import annotations

from switchboard_server.mesh.clusters import cluster
from switchboard_server.mesh.envoy_config import Config, seconds, typed
from switchboard_server.mesh.routes import HEALTH_SERVICE, route_action
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan, Topology

FRONTDOOR_CLUSTER = "frontdoor"
HEALTH_PREFIX = f"/{HEALTH_SERVICE}/"
REFLECTION_PREFIX = "/grpc.reflection."
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"


def exposed_services(topology: Topology) -> dict[str, str]:
    """The gRPC service name of each service the edge exposes -> its edge cluster."""
    return {topology.services[name].grpc_service: name for name in topology.edge_routes}


def frontdoor_cluster(plan: Plan, settings: MeshSettings, host: str) -> Config:
    """The front door beside the edge (on ``host``): no active health check (its own
    health is the mesh's), no outlier detection."""
    return cluster(FRONTDOOR_CLUSTER, [(host, plan.frontdoor_port)], settings, health_service=None)


def _no_rate_limit() -> Config:
    # A per-route config replaces the listener's. Envoy wants a token bucket in it, but
    # with the filter enabled for 0 % of requests the bucket is never asked, and the
    # route's probes take no tokens from the listener's bucket either.
    return {
        RATE_LIMIT_FILTER: typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="edge_health",
            token_bucket={"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "1s"},
            filter_enabled={"default_value": {"numerator": 0, "denominator": "HUNDRED"}},
        )
    }


def frontdoor_routes(settings: MeshSettings) -> list[Config]:
    """Health Watch, health Check, then reflection (both versions)."""
    watch = {
        "cluster": FRONTDOOR_CLUSTER,
        "timeout": seconds(0),  # a stream: no deadline unless the caller sends one
        "max_stream_duration": {"grpc_timeout_header_max": seconds(settings.grpc_timeout_max_s)},
    }
    check = route_action(FRONTDOOR_CLUSTER, settings.ops_timeout_s, settings, retry=True)
    reflection = route_action(FRONTDOOR_CLUSTER, settings.ops_timeout_s, settings, retry=True)
    exempt = _no_rate_limit() if settings.edge_rate_limit_rps > 0 else {}
    routes: list[Config] = [
        {
            "name": "health.Watch",
            "match": {"path": f"{HEALTH_PREFIX}Watch", "grpc": {}},
            "route": watch,
        },
        {"name": "health", "match": {"prefix": HEALTH_PREFIX, "grpc": {}}, "route": check},
    ]
    if exempt:
        for route in routes:
            route["typed_per_filter_config"] = exempt
    routes.append(
        {
            "name": "reflection",
            "match": {"prefix": REFLECTION_PREFIX, "grpc": {}},
            "route": reflection,
        }
    )
    return routes
