"""Routes: one per method with its own policy, then one per gRPC service.

Every route retries a request that never reached an app (``SAFE_RETRY_ON``); only
idempotent methods also retry failures an app may have acted on (``RETRY_ON``). A
write with ``keyed_retry`` gets two routes at its callers: first one matching requests
that carry their idempotency key in the ``x-switchboard-request-id`` header, retried
like an idempotent method (the server deduplicates a resend and refuses a header that
disagrees with the body's ``request_id``), then the safe-only route for keyless ones.
A caller's ``grpc-timeout`` bounds the call (capped), the method's timeout does when it
sent none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from switchboard_client import REQUEST_ID_HEADER
from switchboard_server.mesh.envoy_config import Config, seconds, typed
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import MethodPolicy, ServiceSpec

# Set by a sidecar's ingress on its local reply when it could not connect to its app
# (response flag UF): the request never reached an app, so the caller's Envoy may send
# it to another replica, write or not.
NOT_DELIVERED_HEADER = "x-switchboard-not-delivered"
# Conditions where Envoy knows the request never reached the upstream: safe for writes.
SAFE_RETRY_ON = "connect-failure,refused-stream,reset-before-request,retriable-headers"
# Idempotent methods also retry failures an app may have acted on (`reset` covers
# reset-before-request, and a per-try timeout).
RETRY_ON = (
    "unavailable,resource-exhausted,cancelled,connect-failure,refused-stream,reset,"
    "retriable-headers"
)
# The sidecar ingress retries its own app only where the request never reached it;
# a refused connection goes back to the caller, marked, to try another replica.
INGRESS_RETRY_ON = "refused-stream,reset-before-request"
HEALTH_SERVICE = "grpc.health.v1.Health"
# What a request_id looks like (RE2, matched against the whole header value): a request
# whose header is anything else (or repeated) takes the safe-only route.
UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def per_try_timeout(
    timeout_s: float, settings: MeshSettings, per_try_s: float | None = None
) -> float:
    """The method's own per-try timeout when the topology gives one (within its
    timeout); else the setting, but never so short that a slow method's every try is
    cut off: at least the method's timeout shared among its tries."""
    if per_try_s is not None:
        return min(per_try_s, timeout_s)
    share = timeout_s / (settings.retry_attempts + 1)
    return max(settings.retry_per_try_timeout_s, share)


def _retry_policy(retry_on: str, settings: MeshSettings, *, other_host: bool = True) -> Config:
    policy: Config = {
        "retry_on": retry_on,
        "num_retries": settings.retry_attempts,
        "retry_back_off": {
            "base_interval": seconds(settings.retry_backoff_base_s),
            "max_interval": seconds(settings.retry_backoff_max_s),
        },
    }
    if other_host:  # a caller's Envoy: another replica each time; the mark counts
        policy["retriable_headers"] = [{"name": NOT_DELIVERED_HEADER, "present_match": True}]
        policy["retry_host_predicate"] = [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": typed(
                    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                ),
            }
        ]
        policy["host_selection_retry_max_attempts"] = 3
    return policy


def route_action(
    cluster: str,
    timeout_s: float,
    settings: MeshSettings,
    *,
    retry: bool,
    per_try_s: float | None = None,
) -> Config:
    """``retry``: the method is idempotent, so any retryable failure is retried, each
    try within a per-try timeout; otherwise only a request that never reached an app."""
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
    if settings.retry_attempts == 0:
        return action
    if retry:
        policy = _retry_policy(RETRY_ON, settings)
        # A hung replica's tries time out and count as gateway failures for outlier
        # detection, which ejects it after a few; the retry goes to another replica.
        policy["per_try_timeout"] = seconds(per_try_timeout(timeout_s, settings, per_try_s))
        action["retry_policy"] = policy
    else:
        action["retry_policy"] = _retry_policy(SAFE_RETRY_ON, settings)
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


def methods_regex(spec: ServiceSpec, methods: Sequence[str] | None = None) -> str:
    """``/pkg.Service/`` and one of ``methods`` (default: all the service's), nothing else.

    A method the service does not have then matches no route and the Envoy answers
    UNIMPLEMENTED itself: from the app, UNIMPLEMENTED (HTTP 501 to outlier detection)
    would count as the replica's failure, and a caller with newer protos could eject
    healthy replicas one after the other.
    """
    names = "|".join(re.escape(method) for method in (spec.methods if methods is None else methods))
    return f"^/{re.escape(spec.grpc_service)}/({names})$"


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
            if retries and policy.keyed_retry:
                routes.append(_keyed_route(spec, method, cluster, settings, kind))
            routes.append(
                {
                    "name": f"{spec.name}.{method}",
                    "match": {"path": f"{prefix}{method}", **kind},
                    "route": _route(cluster, policy, settings, retries=retries),
                }
            )
    # The default route needs only the methods without a route of their own (those are
    # matched first, by path): a regex of every method outgrows Envoy's RE2 program-size
    # limit (100) once a service has nine or so.
    rest = [m for m in spec.methods if m not in spec.overrides]
    if rest:
        routes.append(
            {
                "name": spec.name,
                "match": {"safe_regex": {"regex": methods_regex(spec, rest)}, **kind},
                "route": _route(cluster, spec.default, settings, retries=retries),
            }
        )
    return routes


def keyed_match() -> Config:
    """The header matcher of a request that carries a UUID-shaped idempotency key."""
    return {"name": REQUEST_ID_HEADER, "string_match": {"safe_regex": {"regex": UUID_REGEX}}}


def _keyed_route(
    spec: ServiceSpec, method: str, cluster: str, settings: MeshSettings, kind: Config
) -> Config:
    """A write that carries its key: retried like an idempotent method, each try within
    its per-try timeout (a hung replica's try is cut, resent elsewhere, and it is
    ejected); a resend is answered with the first outcome."""
    policy = spec.policy(method)
    match: Config = {"path": f"/{spec.grpc_service}/{method}", **kind}
    match["headers"] = [*kind.get("headers", []), keyed_match()]
    return {
        "name": f"{spec.name}.{method}.keyed",
        "match": match,
        "route": route_action(
            cluster, policy.timeout_s, settings, retry=True, per_try_s=policy.per_try_timeout_s
        ),
    }


def _route(cluster: str, policy: MethodPolicy, settings: MeshSettings, *, retries: bool) -> Config:
    """A caller's route (``retries``) has the method's retry policy; a sidecar's ingress
    route to its own app retries only what that app never saw."""
    if not retries:
        action = route_action(cluster, policy.timeout_s, settings, retry=False)
        if "retry_policy" in action:
            action["retry_policy"] = _retry_policy(INGRESS_RETRY_ON, settings, other_host=False)
        return action
    return route_action(
        cluster,
        policy.timeout_s,
        settings,
        retry=policy.idempotent,
        per_try_s=policy.per_try_timeout_s,
    )
