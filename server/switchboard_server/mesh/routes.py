"""Routes: one per method with its own policy, then one per gRPC service.

Retries only where the method is idempotent; a caller's ``grpc-timeout`` bounds the call
(capped), the method's timeout does when it sent none.
"""

from __future__ import annotations

from switchboard_server.mesh.envoy_config import Config, seconds, typed
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import ServiceSpec

RETRY_ON = "unavailable,resource-exhausted,cancelled,connect-failure,refused-stream,reset"
HEALTH_SERVICE = "grpc.health.v1.Health"


def per_try_timeout(timeout_s: float, settings: MeshSettings) -> float:
    """The setting, but never so short that a slow method's every try is cut off:
    at least the method's timeout shared among its tries."""
    share = timeout_s / (settings.retry_attempts + 1)
    return max(settings.retry_per_try_timeout_s, share)


def route_action(cluster: str, timeout_s: float, settings: MeshSettings, *, retry: bool) -> Config:
    action: Config = {
        "cluster": cluster,
        "timeout": seconds(timeout_s),
        # With max_stream_duration set Envoy ignores `timeout`: the caller's grpc-timeout
        # (capped) bounds the call, and max_stream_duration does when it sent none.
        "max_stream_duration": {
            "max_stream_duration": seconds(timeout_s),
            "grpc_timeout_header_max": seconds(settings.grpc_timeout_max_s),
        },
    }
    if retry and settings.retry_attempts > 0:
        action["retry_policy"] = {
            "retry_on": RETRY_ON,
            "num_retries": settings.retry_attempts,
            "per_try_timeout": seconds(per_try_timeout(timeout_s, settings)),
            "retry_back_off": {
                "base_interval": seconds(settings.retry_backoff_base_s),
                "max_interval": seconds(settings.retry_backoff_max_s),
            },
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": typed(
                        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    ),
                }
            ],
            "host_selection_retry_max_attempts": 3,
        }
    return action


def grpc_match(*, grpc_web: bool = False) -> Config:
    """Route-match fields for gRPC requests; with ``grpc_web`` for gRPC-Web ones too.

    The edge routes a gRPC-Web call before its ``grpc_web`` filter turns it into gRPC,
    so there the match is on the content type (``application/grpc``, ``…+proto``,
    ``application/grpc-web…``) rather than Envoy's gRPC-only ``grpc`` matcher.
    """
    if not grpc_web:
        return {"grpc": {}}
    content_type = {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
    return {"headers": [content_type]}


def service_routes(
    spec: ServiceSpec,
    cluster: str,
    settings: MeshSettings,
    *,
    retries: bool,
    grpc_web: bool = False,
) -> list[Config]:
    """One route per method with its own policy, then the service default."""
    prefix = f"/{spec.grpc_service}/"
    kind = grpc_match(grpc_web=grpc_web)
    routes = []
    for method in spec.methods:
        policy = spec.policy(method)
        if method in spec.overrides:
            routes.append(
                {
                    "name": f"{spec.name}.{method}",
                    "match": {"path": f"{prefix}{method}", **kind},
                    "route": route_action(
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
            "match": {"prefix": prefix, **kind},
            "route": route_action(
                cluster, spec.default.timeout_s, settings, retry=retries and spec.default.idempotent
            ),
        }
    )
    return routes
