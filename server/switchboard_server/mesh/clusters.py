"""Clusters: HTTP/2 upstreams with circuit breakers, and for callees outlier detection
and active gRPC health checks (service name set).

Every cluster balances by least request with two random choices: a replica that answers
slowly or not at all holds more requests in flight, so it gets fewer new ones (round
robin would keep feeding it, and with a fixed call pattern per turn it split methods
between replicas).

Outlier detection counts only an upstream's own failures. Envoy maps a trailers-only
``grpc-status`` to an HTTP code (INTERNAL, UNKNOWN, DATA_LOSS -> 500, UNIMPLEMENTED ->
501, UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504) and counts only 5xx, so a caller's
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE (400,
404, 409), PERMISSION_DENIED (403) or RESOURCE_EXHAUSTED (429) never counts; the apps
answer undecodable requests INVALID_ARGUMENT rather than UNKNOWN for that reason.
Local-origin failures (connect failures, resets, per-try timeouts) are counted apart
from the answers the app sent (``split_external_local_origin_errors``), and the
listeners' header limits (render.py) keep a caller's oversized request from ever
becoming a reset between two hops.
"""

from __future__ import annotations

from switchboard_server.mesh.addresses import AddressPlan
from switchboard_server.mesh.envoy_config import Config, address, seconds, typed
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan

OTLP_CLUSTER = "otlp_collector"


def cluster(
    name: str,
    endpoints: list[tuple[str, int]],
    settings: MeshSettings,
    *,
    health_service: str | None,
    dns_refresh_s: float | None = None,
) -> Config:
    """``dns_refresh_s`` set: the endpoints are names, re-resolved that often
    (``STRICT_DNS``: every address a name resolves to is an endpoint)."""
    config: Config = {
        "name": name,
        **_discovery(dns_refresh_s),
        "connect_timeout": seconds(settings.connect_timeout_s),
        **load_balancing(settings),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": address(h, p)}} for h, p in endpoints]}
            ],
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": settings.cb_max_connections,
                    "max_pending_requests": settings.cb_max_pending_requests,
                    "max_requests": settings.cb_max_requests,
                    "max_retries": settings.cb_max_retries,
                    "retry_budget": {
                        "budget_percent": {"value": settings.retry_budget_percent},
                        "min_retry_concurrency": settings.retry_min_concurrency,
                    },
                    "track_remaining": True,
                }
            ]
        },
    }
    if health_service is not None:
        interval = seconds(settings.health_interval_s)
        config["health_checks"] = [
            {
                "timeout": seconds(settings.health_timeout_s),
                "interval": interval,
                "no_traffic_interval": interval,
                "no_traffic_healthy_interval": interval,
                "unhealthy_threshold": settings.health_unhealthy_threshold,
                "healthy_threshold": settings.health_healthy_threshold,
                "grpc_health_check": {"service_name": health_service},
            }
        ]
        config["outlier_detection"] = {
            "split_external_local_origin_errors": True,
            "consecutive_5xx": settings.outlier_consecutive_5xx,
            "consecutive_gateway_failure": settings.outlier_consecutive_gateway_failure,
            "consecutive_local_origin_failure": settings.outlier_consecutive_local_origin_failure,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
            "enforcing_consecutive_local_origin_failure": 100,
            "interval": seconds(settings.outlier_interval_s),
            "base_ejection_time": seconds(settings.outlier_base_ejection_s),
            "max_ejection_percent": settings.outlier_max_ejection_percent,
        }
    return config


def _discovery(dns_refresh_s: float | None) -> Config:
    """Fixed addresses, or names re-resolved every ``dns_refresh_s`` (Envoy's DNS
    cluster: each address a name resolves to is an endpoint, like ``STRICT_DNS``)."""
    if dns_refresh_s is None:
        return {"type": "STATIC"}
    return {
        "cluster_type": {
            "name": "envoy.cluster.dns",
            "typed_config": typed(
                "envoy.extensions.clusters.dns.v3.DnsCluster",
                dns_refresh_rate=seconds(dns_refresh_s),
                dns_lookup_family="V4_PREFERRED",
            ),
        }
    }


def load_balancing(settings: MeshSettings) -> Config:
    """Power of two choices: the one of two random healthy hosts with fewer requests.

    An ejection or a failed health check reaches the load balancer at once: by default
    Envoy merges such updates for 1 s (``update_merge_window``), so a replica ejected
    after its first timeouts would keep getting new requests for up to a second.
    """
    return {
        "lb_policy": "LEAST_REQUEST",
        "least_request_lb_config": {"choice_count": settings.lb_choice_count},
        "common_lb_config": {"update_merge_window": seconds(settings.lb_update_merge_window_s)},
    }


def service_cluster(
    plan: Plan,
    service: str,
    settings: MeshSettings,
    addresses: AddressPlan,
    *,
    name: str | None = None,
) -> Config:
    """The callers' cluster of a service (``name``: of one of its variants)."""
    spec = plan.topology.services[service]
    name = name or service
    return cluster(
        name,
        list(addresses.endpoints[name]),
        settings,
        health_service=spec.grpc_service,
        dns_refresh_s=addresses.dns_refresh_s if addresses.dns else None,
    )


def otlp_cluster(endpoint: str) -> Config:
    host, _, port = endpoint.removeprefix("http://").rpartition(":")
    return {
        "name": OTLP_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST",  # should the name resolve to several collectors
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        "load_assignment": {
            "cluster_name": OTLP_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(host, int(port))}}]}],
        },
    }
