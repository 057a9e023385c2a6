"""Render every Envoy config of a :class:`Plan`: the edge and one sidecar per replica.

A sidecar has an ingress listener (its public port) routing to the local app, and one
egress listener per service the app calls; the edge and the egress listeners route to
clusters whose endpoints are the callee replicas' sidecars. Callers' clusters carry the
resilience policy (retries for idempotent methods only, circuit breakers, outlier
detection, active gRPC health checks); the ingress hop only adds timeouts and stats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan, Replica, ServiceSpec

Config = dict[str, Any]

RETRY_ON = "unavailable,resource-exhausted,cancelled,connect-failure,refused-stream,reset"
HEALTH_SERVICE = "grpc.health.v1.Health"
OTLP_CLUSTER = "otlp_collector"
LOCAL_APP = "local_app"
MAX_DOWNSTREAM_CONNECTIONS = 10_000

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "envoy": "%ENVIRONMENT(SWITCHBOARD_ENVOY_NAME)%",
    "path": "%REQ(:PATH)%",
    "grpc_status": "%GRPC_STATUS(NUMBER)%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "trace_id": "%TRACE_ID%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "correlation_id": "%REQ(X-CORRELATION-ID)%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "duration_ms": "%DURATION%",
}


def _seconds(value: float) -> str:
    return f"{value:.3f}s"


def _address(host: str, port: int) -> Config:
    return {"socket_address": {"address": host, "port_value": port}}


def _typed(type_name: str, **fields: Any) -> Config:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def _access_log() -> list[Config]:
    not_health_check = {
        "header_filter": {
            "header": {
                "name": "user-agent",
                "string_match": {"prefix": "Envoy/HC"},
                "invert_match": True,
            }
        }
    }
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "filter": not_health_check,
            "typed_config": _typed(
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                log_format={"json_format": ACCESS_LOG_FORMAT},
            ),
        }
    ]


def _tracing(service_name: str, otlp_endpoint: str) -> Config | None:
    """OpenTelemetry spans to the collector.

    Envoy 1.40 refuses an OpenTelemetry tracer without an exporter, so with no collector
    there is no tracer: Envoy then forwards ``traceparent``/``tracestate`` untouched and
    the apps' spans still join the caller's trace.
    """
    if not otlp_endpoint:
        return None
    otel = {
        "service_name": service_name,
        "grpc_service": {"envoy_grpc": {"cluster_name": OTLP_CLUSTER}, "timeout": "1s"},
    }
    return {
        "spawn_upstream_span": True,
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed("envoy.config.trace.v3.OpenTelemetryConfig", **otel),
        },
    }


def grpc_stats_allowlist(plan: Plan) -> Config:
    """Per-method stats only for the methods in the protos (bounded stat names)."""
    services = [
        {"name": spec.grpc_service, "method_names": list(spec.methods)}
        for spec in plan.topology.services.values()
    ]
    services.append({"name": HEALTH_SERVICE, "method_names": ["Check", "Watch"]})
    return {"services": services}


def _http_filters(plan: Plan, settings: MeshSettings, *, rate_limit: bool) -> list[Config]:
    filters: list[Config] = []
    if rate_limit and settings.edge_rate_limit_rps > 0:
        enabled = {
            "default_value": {"numerator": 100, "denominator": "HUNDRED"},
            "runtime_key": "edge_rate_limit_enabled",
        }
        filters.append(
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    stat_prefix="edge_rate_limit",
                    token_bucket={
                        "max_tokens": settings.edge_rate_limit_burst,
                        "tokens_per_fill": settings.edge_rate_limit_rps,
                        "fill_interval": "1s",
                    },
                    filter_enabled=enabled,
                    filter_enforced={**enabled, "runtime_key": "edge_rate_limit_enforced"},
                    rate_limited_as_resource_exhausted=True,
                ),
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.grpc_stats",
            "typed_config": _typed(
                "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                emit_filter_state=True,
                enable_upstream_stats=True,
                individual_method_stats_allowlist=grpc_stats_allowlist(plan),
            ),
        }
    )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
        }
    )
    return filters


def _listener(
    name: str,
    host: str,
    port: int,
    routes: list[Config],
    plan: Plan,
    settings: MeshSettings,
    tracing_name: str,
    otlp_endpoint: str,
    *,
    rate_limit: bool = False,
) -> Config:
    hcm = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix=name,
        codec_type="AUTO",
        http2_protocol_options={},
        generate_request_id=True,
        access_log=_access_log(),
        route_config={
            "name": name,
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}],
        },
        http_filters=_http_filters(plan, settings, rate_limit=rate_limit),
    )
    tracing = _tracing(tracing_name, otlp_endpoint)
    if tracing is not None:
        hcm["tracing"] = tracing
    return {
        "name": name,
        "address": _address(host, port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def per_try_timeout(timeout_s: float, settings: MeshSettings) -> float:
    """The setting, but never so short that a slow method's every try is cut off:
    at least the method's timeout shared among its tries."""
    share = timeout_s / (settings.retry_attempts + 1)
    return max(settings.retry_per_try_timeout_s, share)


def _route_action(cluster: str, timeout_s: float, settings: MeshSettings, *, retry: bool) -> Config:
    action: Config = {
        "cluster": cluster,
        "timeout": _seconds(timeout_s),
        # With max_stream_duration set Envoy ignores `timeout`: the caller's grpc-timeout
        # (capped) bounds the call, and max_stream_duration does when it sent none.
        "max_stream_duration": {
            "max_stream_duration": _seconds(timeout_s),
            "grpc_timeout_header_max": _seconds(settings.grpc_timeout_max_s),
        },
    }
    if retry and settings.retry_attempts > 0:
        action["retry_policy"] = {
            "retry_on": RETRY_ON,
            "num_retries": settings.retry_attempts,
            "per_try_timeout": _seconds(per_try_timeout(timeout_s, settings)),
            "retry_back_off": {
                "base_interval": _seconds(settings.retry_backoff_base_s),
                "max_interval": _seconds(settings.retry_backoff_max_s),
            },
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": _typed(
                        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    ),
                }
            ],
            "host_selection_retry_max_attempts": 3,
        }
    return action


def service_routes(
    spec: ServiceSpec, cluster: str, settings: MeshSettings, *, retries: bool
) -> list[Config]:
    """One route per method with its own policy, then the service default."""
    prefix = f"/{spec.grpc_service}/"
    routes = []
    for method in spec.methods:
        policy = spec.policy(method)
        if method in spec.overrides:
            routes.append(
                {
                    "name": f"{spec.name}.{method}",
                    "match": {"path": f"{prefix}{method}", "grpc": {}},
                    "route": _route_action(
                        cluster,
                        policy.timeout_s,
                        settings,
                        retry=retries and policy.idempotent,
                    ),
                }
            )
    routes.append(
        {
            "name": spec.name,
            "match": {"prefix": prefix, "grpc": {}},
            "route": _route_action(
                cluster, spec.default.timeout_s, settings, retry=retries and spec.default.idempotent
            ),
        }
    )
    return routes


def _ops_routes(cluster: str, settings: MeshSettings) -> list[Config]:
    """Health and reflection: idempotent, answered by the routed-to app."""
    return [
        {
            "name": f"{prefix.strip('/.')}",
            "match": {"prefix": prefix, "grpc": {}},
            "route": _route_action(cluster, settings.ops_timeout_s, settings, retry=True),
        }
        for prefix in (f"/{HEALTH_SERVICE}/", "/grpc.reflection.")
    ]


def _cluster(
    name: str,
    endpoints: list[tuple[str, int]],
    settings: MeshSettings,
    *,
    health_service: str | None,
) -> Config:
    cluster: Config = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": _seconds(settings.connect_timeout_s),
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address(h, p)}} for h, p in endpoints]}
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
        interval = _seconds(settings.health_interval_s)
        cluster["health_checks"] = [
            {
                "timeout": _seconds(settings.health_timeout_s),
                "interval": interval,
                "no_traffic_interval": interval,
                "no_traffic_healthy_interval": interval,
                "unhealthy_threshold": settings.health_unhealthy_threshold,
                "healthy_threshold": settings.health_healthy_threshold,
                "grpc_health_check": {"service_name": health_service},
            }
        ]
        cluster["outlier_detection"] = {
            "consecutive_5xx": settings.outlier_consecutive_5xx,
            "consecutive_gateway_failure": settings.outlier_consecutive_gateway_failure,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
            "interval": _seconds(settings.outlier_interval_s),
            "base_ejection_time": _seconds(settings.outlier_base_ejection_s),
            "max_ejection_percent": settings.outlier_max_ejection_percent,
        }
    return cluster


def _service_cluster(plan: Plan, service: str, settings: MeshSettings) -> Config:
    spec = plan.topology.services[service]
    endpoints = [(plan.host, r.sidecar_port) for r in plan.replicas[service]]
    return _cluster(service, endpoints, settings, health_service=spec.grpc_service)


def _otlp_cluster(endpoint: str) -> Config:
    host, _, port = endpoint.removeprefix("http://").rpartition(":")
    return {
        "name": OTLP_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        "load_assignment": {
            "cluster_name": OTLP_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, int(port))}}]}],
        },
    }


def _bootstrap(
    plan: Plan,
    admin_port: int,
    listeners: list[Config],
    clusters: list[Config],
    otlp_endpoint: str,
) -> Config:
    if otlp_endpoint:
        clusters = [*clusters, _otlp_cluster(otlp_endpoint)]
    return {
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": _typed(
                        "envoy.extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS,
                    ),
                }
            ]
        },
    }


def render_edge(plan: Plan, settings: MeshSettings, otlp_endpoint: str = "") -> Config:
    services = plan.topology.edge_routes
    routes: list[Config] = []
    for name in services:
        routes += service_routes(plan.topology.services[name], name, settings, retries=True)
    routes += _ops_routes(services[0], settings)
    listener = _listener(
        "edge",
        plan.host,
        plan.edge_port,
        routes,
        plan,
        settings,
        "envoy-edge",
        otlp_endpoint,
        rate_limit=True,
    )
    clusters = [_service_cluster(plan, name, settings) for name in services]
    return _bootstrap(plan, plan.edge_admin_port, [listener], clusters, otlp_endpoint)


def render_sidecar(
    plan: Plan, replica: Replica, settings: MeshSettings, otlp_endpoint: str = ""
) -> Config:
    spec = plan.topology.services[replica.service]
    ingress_routes = service_routes(spec, LOCAL_APP, settings, retries=False)
    ingress_routes.append(
        {
            "name": "ops",
            "match": {"prefix": "/"},
            "route": {"cluster": LOCAL_APP, "timeout": _seconds(settings.ops_timeout_s)},
        }
    )
    tracing_name = f"envoy-{replica.service}"
    listeners = [
        _listener(
            "ingress",
            plan.host,
            replica.sidecar_port,
            ingress_routes,
            plan,
            settings,
            tracing_name,
            otlp_endpoint,
        )
    ]
    clusters = [_cluster(LOCAL_APP, [(plan.host, replica.app_port)], settings, health_service=None)]
    for callee in spec.calls:
        callee_spec = plan.topology.services[callee]
        listeners.append(
            _listener(
                f"egress_{callee}",
                "127.0.0.1",
                replica.egress_ports[callee],
                service_routes(callee_spec, callee, settings, retries=True),
                plan,
                settings,
                tracing_name,
                otlp_endpoint,
            )
        )
        clusters.append(_service_cluster(plan, callee, settings))
    return _bootstrap(plan, replica.admin_port, listeners, clusters, otlp_endpoint)


def render_all(plan: Plan, settings: MeshSettings, otlp_endpoint: str = "") -> dict[str, Config]:
    """Every Envoy config of the plan by process name (``edge``, ``<replica>.sidecar``)."""
    configs = {"edge": render_edge(plan, settings, otlp_endpoint)}
    for replica in plan.all_replicas():
        configs[f"{replica.name}.sidecar"] = render_sidecar(plan, replica, settings, otlp_endpoint)
    return configs


def write_configs(configs: dict[str, Config], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, config in configs.items():
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths[name] = path
    return paths
