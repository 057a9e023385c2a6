"""Routes: one per method with its own policy, then one per gRPC service.

Retries only where the method is idempotent; a caller's ``grpc-timeout`` bounds the call
(capped), the method's timeout does when it sent none.
"""

from __future__ import annotations

import re

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


def methods_regex(spec: ServiceSpec) -> str:
    """``/pkg.Service/`` and one of the service's methods, nothing else.

    A method the service does not have then matches no route and the Envoy answers
    UNIMPLEMENTED itself: from the app, UNIMPLEMENTED (HTTP 501 to outlier detection)
    would count as the replica's failure, and a caller with newer protos could eject
    healthy replicas one after the other.
    """
    names = "|".join(re.escape(method) for method in spec.methods)
    return f"^/{re.escape(spec.grpc_service)}/({names})$"


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
            "match": {"safe_regex": {"regex": methods_regex(spec)}, "grpc": {}},
            "route": route_action(
                cluster, spec.default.timeout_s, settings, retry=retries and spec.default.idempotent
            ),
        }
    )
    return routes


def ops_routes(cluster: str, settings: MeshSettings) -> list[Config]:
    """Health and reflection: idempotent, answered by the routed-to app."""
    return [
        {
            "name": f"{prefix.strip('/.')}",
            "match": {"prefix": prefix, "grpc": {}},
            "route": route_action(cluster, settings.ops_timeout_s, settings, retry=True),
        }
        for prefix in (f"/{HEALTH_SERVICE}/", "/grpc.reflection.")
    ]
