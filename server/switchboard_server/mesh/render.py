"""Render every Envoy config of a :class:`Plan`: the edge and one sidecar per replica.

A sidecar has an ingress listener (its public port) routing to the local app, and one
egress listener per service the app calls; the edge and the egress listeners route to
clusters whose endpoints are the callee replicas' sidecars. Callers' clusters carry the
resilience policy (retries for idempotent methods only, circuit breakers, outlier
detection, active gRPC health checks); the ingress hop only adds timeouts and stats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from switchboard_server.mesh.addresses import AddressPlan, local_addresses
from switchboard_server.mesh.clusters import OTLP_CLUSTER, cluster, otlp_cluster, service_cluster
from switchboard_server.mesh.edge.frontdoor import frontdoor_cluster, frontdoor_routes
from switchboard_server.mesh.edge.rest import local_reply_config, transcoder_filter
from switchboard_server.mesh.edge.web import (
    cors_virtual_host_config,
    page_route_config,
    page_routes,
    preflight_route,
    web_filters,
)
from switchboard_server.mesh.envoy_config import Config, address, seconds, typed
from switchboard_server.mesh.rollout.variants import (
    runtime_layer,
    shadow_ingress_routes,
    split_routes,
)
from switchboard_server.mesh.routes import HEALTH_SERVICE, NOT_DELIVERED_HEADER, service_routes
from switchboard_server.mesh.security.edge_auth import (
    edge_auth_filters,
    jwks_clusters,
    local_reply_mappers,
    tls_transport_socket,
)
from switchboard_server.mesh.security.mtls import MeshTls, secure_all
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan, Replica, variant_cluster

LOCAL_APP = "local_app"
MAX_DOWNSTREAM_CONNECTIONS = 10_000

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "envoy": "%ENVIRONMENT(SWITCHBOARD_ENVOY_NAME)%",
    "path": "%REQ(:PATH)%",
    "rest_path": "%REQ(X-ENVOY-ORIGINAL-PATH)%",  # a REST call's path before transcoding
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


def _access_log() -> list[Config]:
    # Health probes (Envoy's active checks, the runner's, Kubernetes') would drown the
    # log: one line per probe per Envoy several times a second. The apps log them.
    not_health_check = {
        "header_filter": {
            "header": {
                "name": ":path",
                "string_match": {"prefix": "/grpc.health.v1.Health/"},
                "invert_match": True,
            }
        }
    }
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "filter": not_health_check,
            "typed_config": typed(
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                log_format={"json_format": ACCESS_LOG_FORMAT},
            ),
        }
    ]


def _tracing(
    service_name: str, otlp_endpoint: str, upstream_spans: bool, sample_ratio: float
) -> Config | None:
    """OpenTelemetry spans to the collector.

    Without ``upstream_spans`` each Envoy hop is one span whose kind follows the
    listener's ``traffic_direction`` (SERVER inbound, CLIENT outbound); with them the
    router adds a CLIENT span per upstream attempt under the hop's SERVER span.

    ``sample_ratio`` is the share of new traces (requests without a ``traceparent``,
    so in practice at the edge) that Envoy samples, as the apps do; a request with a
    ``traceparent`` keeps its caller's sampled flag.

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
        "random_sampling": {"value": sample_ratio * 100},
        "spawn_upstream_span": upstream_spans,
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": typed("envoy.config.trace.v3.OpenTelemetryConfig", **otel),
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


def _not_delivered_reply() -> Config:
    """An ingress that could not connect to its app (response flag UF) marks its reply,
    so the caller's Envoy retries the request on another replica, even a write."""
    return {
        "mappers": [
            {
                "filter": {"response_flag_filter": {"flags": ["UF"]}},
                "headers_to_add": [
                    {
                        "header": {"key": NOT_DELIVERED_HEADER, "value": "1"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            }
        ]
    }


def _http_filters(
    plan: Plan, settings: MeshSettings, *, rate_limit: bool, leading: Sequence[Config] = ()
) -> list[Config]:
    filters: list[Config] = list(leading)
    if rate_limit and settings.edge_rate_limit_rps > 0:
        enabled = {
            "default_value": {"numerator": 100, "denominator": "HUNDRED"},
            "runtime_key": "edge_rate_limit_enabled",
        }
        filters.append(
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": typed(
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
            "typed_config": typed(
                "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                # Message counts in filter state would only cost work per request:
                # no access-log field or other filter reads them.
                emit_filter_state=False,
                enable_upstream_stats=True,
                individual_method_stats_allowlist=grpc_stats_allowlist(plan),
            ),
        }
    )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": typed("envoy.extensions.filters.http.router.v3.Router"),
        }
    )
    return filters


def request_headers_kb(settings: MeshSettings, *, ingress: bool) -> int:
    """The header limit of a listener. A sidecar's ingress accepts a little more than
    the edge and egress listeners in front of it: what one hop forwards is never reset
    by the next (a reset would reach the caller as UNAVAILABLE and count against a
    healthy replica). The apps' own limit is higher still, so a request over
    ``SWITCHBOARD_MAX_METADATA_BYTES`` is answered by the app, with a status that says
    so; only over this limit does Envoy refuse, by resetting the stream (HTTP/2 has no
    other answer for a header block it will not read)."""
    return settings.ingress_headers_kb if ingress else settings.max_request_headers_kb


def fault_filter() -> Config:
    """Envoy's fault filter with every fault at 0 %: inert until an operator (the chaos
    suite) sets its runtime keys through the admin's ``/runtime_modify``. Abort and delay
    are configured so that the runtime keys ``fault.http.abort.*`` and
    ``fault.http.delay.*`` apply; without them Envoy ignores those keys."""
    zero = {"numerator": 0, "denominator": "HUNDRED"}
    return {
        "name": "envoy.filters.http.fault",
        "typed_config": typed(
            "envoy.extensions.filters.http.fault.v3.HTTPFault",
            abort={"grpc_status": 14, "percentage": zero},  # UNAVAILABLE
            delay={"fixed_delay": "0.1s", "percentage": zero},
        ),
    }


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
    trace_sample_ratio: float,
    outbound: bool = False,
    rate_limit: bool = False,
    leading_filters: Sequence[Config] = (),
    vhost_filter_config: Config | None = None,
    route_config_fields: Config | None = None,
    extra_hcm: Config | None = None,
    ingress: bool = False,
) -> Config:
    vhost: Config = {"name": name, "domains": ["*"], "routes": routes}
    if vhost_filter_config:
        vhost["typed_per_filter_config"] = vhost_filter_config
    hcm = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix=name,
        codec_type="AUTO",
        max_request_headers_kb=request_headers_kb(settings, ingress=ingress),
        http2_protocol_options={},
        generate_request_id=True,
        access_log=_access_log(),
        route_config={"name": name, "virtual_hosts": [vhost], **(route_config_fields or {})},
        http_filters=_http_filters(plan, settings, rate_limit=rate_limit, leading=leading_filters),
        **(extra_hcm or {}),
    )
    if ingress:
        hcm["local_reply_config"] = _not_delivered_reply()
    tracing = _tracing(
        tracing_name, otlp_endpoint, settings.trace_upstream_spans, trace_sample_ratio
    )
    if tracing is not None:
        hcm["tracing"] = tracing
    return {
        "name": name,
        "address": address(host, port),
        "traffic_direction": "OUTBOUND" if outbound else "INBOUND",
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def _runtime(
    settings: MeshSettings, otlp_endpoint: str, rollout_root: Path | None = None
) -> Config:
    """Runtime layers: span batching of the OpenTelemetry tracer, the rollout policy
    (a watched disk layer, :mod:`.rollout.variants`) at callers of a service with variants,
    then the admin layer (``/runtime_modify`` keeps working)."""
    static: Config = {}
    if otlp_endpoint:
        static["tracing.opentelemetry.min_flush_spans"] = settings.trace_flush_spans
        static["tracing.opentelemetry.flush_interval_ms"] = settings.trace_flush_interval_ms
    layers: list[Config] = [{"name": "static", "static_layer": static}]
    if rollout_root is not None:
        layers.append(runtime_layer(rollout_root))
    layers.append({"name": "admin", "admin_layer": {}})
    return {"layers": layers}


def _bootstrap(
    plan: Plan,
    settings: MeshSettings,
    admin_port: int,
    listeners: list[Config],
    clusters: list[Config],
    otlp_endpoint: str,
    rollout_root: Path | None = None,
) -> Config:
    if otlp_endpoint:
        clusters = [*clusters, otlp_cluster(otlp_endpoint)]
    return {
        "admin": {"address": address("127.0.0.1", admin_port)},
        "layered_runtime": _runtime(settings, otlp_endpoint, rollout_root),
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": typed(
                        "envoy.extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS,
                    ),
                }
            ]
        },
    }


def render_edge(
    plan: Plan,
    settings: MeshSettings,
    otlp_endpoint: str = "",
    *,
    trace_sample_ratio: float = 1.0,
    addresses: AddressPlan | None = None,
) -> Config:
    addresses = addresses or local_addresses(plan)
    services = plan.topology.edge_routes
    # The page by path, CORS preflights, then gRPC (and gRPC-Web) by service prefix.
    routes = [*page_routes(addresses.asset_root), preflight_route(services[0], settings)]
    for name in services:
        spec = plan.topology.services[name]
        routes += service_routes(spec, name, settings, retries=True, grpc_web=True)
    routes += frontdoor_routes(settings)
    # cors and grpc_web first, then the token check and the per-client limit (by the
    # REST path of a REST call), then the REST transcoder (the browser's calls are gRPC
    # by then)
    leading = [*web_filters(), *edge_auth_filters(settings)]
    mappers = local_reply_mappers(settings)
    if settings.edge_rest:
        grpc_services = [plan.topology.services[name].grpc_service for name in services]
        leading.append(transcoder_filter(grpc_services, addresses.asset_root))
        mappers += local_reply_config()["mappers"]
    extra_hcm: Config = {"local_reply_config": {"mappers": mappers}} if mappers else {}
    listener = _listener(
        "edge",
        addresses.listen_host,
        plan.edge_port,
        routes,
        plan,
        settings,
        "envoy-edge",
        otlp_endpoint,
        trace_sample_ratio=trace_sample_ratio,
        rate_limit=True,
        leading_filters=leading,
        vhost_filter_config=cors_virtual_host_config(plan, settings),
        route_config_fields=page_route_config(),
        extra_hcm=extra_hcm,
    )
    clusters = [service_cluster(plan, name, settings, addresses) for name in services]
    clusters.append(frontdoor_cluster(plan, settings, addresses.app_host))
    clusters += jwks_clusters(settings)
    tls = tls_transport_socket(settings)
    if tls is not None:
        listener["filter_chains"][0]["transport_socket"] = tls
    return _bootstrap(plan, settings, plan.edge_admin_port, [listener], clusters, otlp_endpoint)


def render_sidecar(
    plan: Plan,
    replica: Replica,
    settings: MeshSettings,
    otlp_endpoint: str = "",
    *,
    trace_sample_ratio: float = 1.0,
    addresses: AddressPlan | None = None,
    rollout_root: Path | None = None,
) -> Config:
    addresses = addresses or local_addresses(plan)
    spec = plan.topology.services[replica.service]
    ingress_routes = shadow_ingress_routes(
        spec, service_routes(spec, LOCAL_APP, settings, retries=False)
    )
    ingress_routes.append(
        {
            "name": "ops",
            "match": {"prefix": "/"},
            "route": {"cluster": LOCAL_APP, "timeout": seconds(settings.ops_timeout_s)},
        }
    )
    tracing_name = f"envoy-{replica.service}"
    listeners = [
        _listener(
            "ingress",
            addresses.listen_host,
            replica.sidecar_port,
            ingress_routes,
            plan,
            settings,
            tracing_name,
            otlp_endpoint,
            trace_sample_ratio=trace_sample_ratio,
            ingress=True,
            leading_filters=[fault_filter()] if settings.fault_injection else (),
        )
    ]
    local_app = [(addresses.app_host, replica.app_port)]
    clusters = [cluster(LOCAL_APP, local_app, settings, health_service=None)]
    for callee in spec.calls:
        callee_spec = plan.topology.services[callee]
        listeners.append(
            _listener(
                f"egress_{callee}",
                "127.0.0.1",
                replica.egress_ports[callee],
                split_routes(
                    callee_spec, service_routes(callee_spec, callee, settings, retries=True)
                ),
                plan,
                settings,
                tracing_name,
                otlp_endpoint,
                trace_sample_ratio=trace_sample_ratio,
                outbound=True,
            )
        )
        for variant in callee_spec.variant_names():
            name = variant_cluster(callee, variant)
            clusters.append(service_cluster(plan, callee, settings, addresses, name=name))
    with_variants = any(plan.topology.services[c].variants for c in spec.calls)
    return _bootstrap(
        plan,
        settings,
        replica.admin_port,
        listeners,
        clusters,
        otlp_endpoint,
        rollout_root if with_variants else None,
    )


def render_all(
    plan: Plan,
    settings: MeshSettings,
    otlp_endpoint: str = "",
    *,
    trace_sample_ratio: float = 1.0,
    addresses: AddressPlan | None = None,
    tls: MeshTls | None = None,
    rollout_root: Path | None = None,
) -> dict[str, Config]:
    """Every Envoy config of the plan by process name (``edge``, ``<replica>.sidecar``).

    With an ``otlp_endpoint``, Envoy samples ``trace_sample_ratio`` of new traces (its
    own default is all of them); callers pass the ratio the apps use. ``addresses``
    (default: the local plan's, :func:`.addresses.local_addresses`) says where the
    Envoys listen and find each other (Compose and Kubernetes: :mod:`switchboard_server.deploy`).
    With ``tls`` the sidecar-to-sidecar hops are mutual TLS with per-method RBAC
    (:mod:`.security.mtls`); without it they are plaintext (``--insecure``).
    ``rollout_root``: where the callers of a service with variants watch the rollout
    policy (:mod:`.rollout.variants`); without it every variant but stable gets no traffic.
    """
    addresses = addresses or local_addresses(plan)
    configs = {
        "edge": render_edge(
            plan,
            settings,
            otlp_endpoint,
            trace_sample_ratio=trace_sample_ratio,
            addresses=addresses,
        )
    }
    for replica in plan.all_replicas():
        configs[f"{replica.name}.sidecar"] = render_sidecar(
            plan,
            replica,
            settings,
            otlp_endpoint,
            trace_sample_ratio=trace_sample_ratio,
            addresses=addresses,
            rollout_root=rollout_root,
        )
    return configs if tls is None else secure_all(configs, plan, tls)


def write_configs(configs: dict[str, Config], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, config in configs.items():
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths[name] = path
    return paths
