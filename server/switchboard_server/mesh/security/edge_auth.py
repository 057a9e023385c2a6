"""The edge's client-facing security: JWT authentication, a rate limit per client, TLS.

* ``envoy.filters.http.jwt_authn`` checks the bearer token of every call (issuer,
  audience, signature against a JWKS from a file or a URL, expiry); health checks,
  reflection (each configurable), CORS preflights and the chat page's own files stay
  open. A refusal is a local reply: HTTP 401 (403 for another audience), which
  :func:`local_reply_mappers` turns into UNAUTHENTICATED with an ``ErrorInfo`` (reason
  ``TOKEN_MISSING``, ``TOKEN_EXPIRED`` or ``TOKEN_INVALID``, told apart by Envoy's
  response code details through a CEL filter) for gRPC and gRPC-Web, and into HTTP 401
  with a JSON ``google.rpc.Status`` for REST.
* The verified payload goes to dynamic metadata (never a header a client could send),
  and a second ``local_ratelimit`` filter turns its ``sub`` into a descriptor: Envoy
  gives each distinct value its own token bucket (a descriptor entry with an empty
  value, at most ``edge_client_rate_limit_max_clients`` at once). Over the limit:
  RESOURCE_EXHAUSTED with an ``ErrorInfo`` (reason ``CLIENT_RATE_LIMITED``), a
  ``RetryInfo`` and ``retry-after``. The edge-wide limit of :mod:`..render` still holds.
* With a certificate and key from files the listener terminates TLS (1.2 or later).
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from switchboard_client import EdgeReason
from switchboard_server.mesh.edge.frontdoor import HEALTH_PREFIX, REFLECTION_PREFIX
from switchboard_server.mesh.edge.web import page_files
from switchboard_server.mesh.envoy_config import Config, seconds, typed
from switchboard_server.mesh.settings import MeshSettings

JWT_FILTER = "envoy.filters.http.jwt_authn"
CLIENT_RATE_LIMIT_FILTER = "switchboard.edge.client_rate_limit"
PROVIDER = "switchboard"
JWKS_CLUSTER = "edge_jwks"
CLIENT_HEADER = "x-switchboard-client"
"""Set by the edge from the verified token's ``sub``, for the apps and their logs."""
PAYLOAD_KEY = "payload"
ERROR_DOMAIN = "edge.switchboard"
REASON_CLIENT_RATE_LIMITED = EdgeReason.CLIENT_RATE_LIMITED.value
CLIENT_FILL_INTERVAL_S = 1
LIMIT_HEADER = "x-switchboard-rate-limited"
RATE_LIMIT_MESSAGE = "client rate limit exceeded"


def _details(code: int, message: str, *details: Message) -> str:
    """A ``grpc-status-details-bin`` value: a base64 ``google.rpc.Status``."""
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return base64.b64encode(status.SerializeToString()).decode()


def _header(key: str, value: str) -> Config:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _open_rules(settings: MeshSettings) -> list[Config]:
    """Requests that need no token: preflights, the page, probes and reflection."""
    preflight = {"name": ":method", "string_match": {"exact": "OPTIONS"}}
    rules: list[Config] = [{"match": {"prefix": "/", "headers": [preflight]}}]
    rules += [{"match": {"path": url}} for url in page_files()]
    if settings.edge_public_health:
        rules.append({"match": {"prefix": HEALTH_PREFIX}})
    if settings.edge_public_reflection:
        rules.append({"match": {"prefix": REFLECTION_PREFIX}})
    return rules


def _jwks(settings: MeshSettings) -> Config:
    if settings.edge_jwks_url:
        return {
            "remote_jwks": {
                "http_uri": {
                    "uri": settings.edge_jwks_url,
                    "cluster": JWKS_CLUSTER,
                    "timeout": seconds(settings.connect_timeout_s * 8),
                },
                "cache_duration": seconds(settings.edge_jwks_cache_s),
                # Fetched when Envoy starts (and refreshed before expiry), not on the
                # first call.
                "async_fetch": {},
            }
        }
    return {"local_jwks": {"filename": str(settings.edge_jwks_file)}}


def jwt_filter(settings: MeshSettings) -> Config:
    provider = {
        "issuer": settings.edge_jwt_issuer,
        "audiences": [settings.edge_jwt_audience],
        "require_expiration": True,
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": False,  # the token stops here; the apps get the subject only
        "payload_in_metadata": PAYLOAD_KEY,
        "claim_to_headers": [{"header_name": CLIENT_HEADER, "claim_name": "sub"}],
        **_jwks(settings),
    }
    rules = _open_rules(settings)
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}})
    return {
        "name": JWT_FILTER,
        "typed_config": typed(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={PROVIDER: provider},
            rules=rules,
        ),
    }


def client_rate_limit_filter(settings: MeshSettings) -> Config:
    """A token bucket per token subject; requests without one (open routes) pass."""
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    retry = duration_pb2.Duration(seconds=CLIENT_FILL_INTERVAL_S)
    details = _details(
        code_pb2.RESOURCE_EXHAUSTED,
        RATE_LIMIT_MESSAGE,
        error_details_pb2.ErrorInfo(reason=REASON_CLIENT_RATE_LIMITED, domain=ERROR_DOMAIN),
        error_details_pb2.RetryInfo(retry_delay=retry),
    )
    subject = {
        "metadata": {
            "descriptor_key": "client",
            "metadata_key": {
                "key": JWT_FILTER,
                "path": [{"key": PAYLOAD_KEY}, {"key": "sub"}],
            },
            "source": "DYNAMIC",
        }
    }
    return {
        "name": CLIENT_RATE_LIMIT_FILTER,
        "typed_config": typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="edge_client_rate_limit",
            filter_enabled=always,
            filter_enforced=always,
            rate_limited_as_resource_exhausted=True,
            always_consume_default_token_bucket=False,
            max_dynamic_descriptors=settings.edge_client_rate_limit_max_clients,
            rate_limits=[{"actions": [subject]}],
            descriptors=[
                {
                    # An empty value: one bucket per distinct subject.
                    "entries": [{"key": "client", "value": ""}],
                    "token_bucket": {
                        "max_tokens": settings.edge_client_rate_limit_burst,
                        "tokens_per_fill": settings.edge_client_rate_limit_rps,
                        "fill_interval": seconds(CLIENT_FILL_INTERVAL_S),
                    },
                }
            ],
            response_headers_to_add=[
                _header("retry-after", str(CLIENT_FILL_INTERVAL_S)),
                _header(LIMIT_HEADER, "client"),
                _header("grpc-status-details-bin", details),
            ],
        ),
    }


def edge_auth_filters(settings: MeshSettings) -> list[Config]:
    """The filters after CORS and gRPC-Web and before the REST transcoder (so a REST
    call is refused by its REST path, with a REST answer); none without edge auth."""
    if not settings.edge_auth:
        return []
    filters = [jwt_filter(settings)]
    if settings.edge_client_rate_limit_rps > 0:
        filters.append(client_rate_limit_filter(settings))
    return filters


# Why a token was refused, from Envoy's response code details
# (``jwt_authn_access_denied{Jwt_is_expired}``); the first that matches wins.
TOKEN_REFUSALS = (
    (EdgeReason.TOKEN_MISSING.value, "Jwt_is_missing", "a bearer token is required"),
    (EdgeReason.TOKEN_EXPIRED.value, "Jwt_is_expired", "the bearer token has expired"),
    (EdgeReason.TOKEN_INVALID.value, "", "the bearer token is not valid"),
)


def _cel(expression: str) -> Config:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": typed(
                "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                expression=expression,
            ),
        }
    }


def _code_details_contain(text: str) -> Config:
    return _cel(f"response.code_details.contains('{text}')")


def _status_is(code: int) -> Config:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": code, "runtime_key": f"edge_auth.local_reply_{code}"},
            }
        }
    }


def _all(*filters: Config) -> Config:
    return {"and_filter": {"filters": list(filters)}}


def local_reply_mappers(settings: MeshSettings) -> list[Config]:
    """Envoy's refusals of a token, as UNAUTHENTICATED with an ``ErrorInfo``; they go
    before the REST mappers of :mod:`..edge.rest`.

    Envoy answers 401, or 403 for a token of another audience; both become 401, since
    the caller has no valid credentials for this edge. A gRPC (or gRPC-Web) caller gets
    our message, equal to the ``Status`` message (gRPC clients check that they match);
    a REST caller gets a JSON ``google.rpc.Status`` with Envoy's words.
    """
    if not settings.edge_auth:
        return []
    refused = {
        "or_filter": {
            "filters": [
                _status_is(401),
                _all(_status_is(403), _code_details_contain("jwt_authn_access_denied")),
            ]
        }
    }
    grpc_call = {
        "header_filter": {
            "header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
        }
    }
    mappers: list[Config] = []
    for reason, detail, message in TOKEN_REFUSALS:
        details = _details(
            code_pb2.UNAUTHENTICATED,
            message,
            error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN),
        )
        match: list[Config] = [refused, grpc_call]
        if detail:
            match.append(_code_details_contain(detail))
        mappers.append(
            {
                "filter": _all(*match),
                "status_code": 401,
                "headers_to_add": [_header("grpc-status-details-bin", details)],
                "body_format_override": {"text_format": message},
            }
        )
    # The per-client limit's refusal (Envoy's words are "local_rate_limited"): our
    # message, equal to the one in its Status. The edge-wide limit keeps Envoy's.
    mappers.append(
        {
            "filter": _all(
                grpc_call,
                _cel(
                    "response.code_details == 'local_rate_limited' && "
                    f"'{LIMIT_HEADER}' in response.headers"
                ),
            ),
            "body_format_override": {"text_format": RATE_LIMIT_MESSAGE},
        }
    )
    rest_body = {"code": code_pb2.UNAUTHENTICATED, "message": "%LOCAL_REPLY_BODY%", "details": []}
    mappers.append(
        {
            "filter": refused,
            "status_code": 401,
            "body_format_override": {
                "json_format": rest_body,
                "content_type": "application/json",
            },
        }
    )
    return mappers


def jwks_clusters(settings: MeshSettings) -> list[Config]:
    """The cluster of a remote JWKS (DNS, TLS for https)."""
    if not settings.edge_auth or not settings.edge_jwks_url:
        return []
    url = urlsplit(settings.edge_jwks_url)
    https = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if https else 80)
    cluster: Config = {
        "name": JWKS_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": seconds(settings.connect_timeout_s * 4),
        "load_assignment": {
            "cluster_name": JWKS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    if https:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": typed(
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", sni=host
            ),
        }
    return [cluster]


def tls_transport_socket(settings: MeshSettings) -> Config | None:
    """TLS termination at the edge (TLS 1.2+, h2 and http/1.1), or None."""
    if not settings.edge_tls:
        return None
    context = typed(
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        common_tls_context={
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(settings.edge_tls_cert_file)},
                    "private_key": {"filename": str(settings.edge_tls_key_file)},
                }
            ],
        },
    )
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}
