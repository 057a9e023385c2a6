"""The edge's REST/JSON front door: Envoy's gRPC-JSON transcoder and JSON error bodies.

The routes are the ``google.api.http`` options in the protos; the transcoder reads them
from the descriptor set that ``make proto`` writes next to this module
(``api_descriptor.binpb``, package data). A REST call is turned into the gRPC call of
its method before the router, so it takes the method's route: the same timeout, retry
policy, rate limit, stats and access log as a gRPC call.

JSON follows grpc-gateway's defaults: responses use the lowerCamelCase JSON names and
print every field, defaults included; requests may use either the JSON or the proto
field names; enums are strings. A server stream is newline-delimited JSON, one message
per line. Errors are a JSON ``google.rpc.Status`` with the HTTP status of its code
(``INVALID_ARGUMENT`` → 400 with the ``BadRequest`` field violations in ``details``). The
edge's own refusals of a non-gRPC request (bad JSON, an unknown query parameter, no
route) get the same JSON shape through the local-reply mappers below.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from switchboard_server.mesh.envoy_config import Config, typed

DESCRIPTOR_SET = "api_descriptor.binpb"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# Longest request path echoed in the message of a "no route" answer.
ECHOED_PATH_MAX = 256

# The edge's own local replies to REST calls, as (HTTP status, google.rpc.Code).
# Codes follow the canonical gRPC <-> HTTP mapping; 413 (a body over the limit) is
# RESOURCE_EXHAUSTED, as gRPC answers a message over its size limit.
LOCAL_REPLY_CODES = (
    (400, 3),  # INVALID_ARGUMENT: bad JSON, unknown query parameter, body/path conflict
    (401, 16),  # UNAUTHENTICATED: no token, or an expired or badly signed one
    (404, 5),  # NOT_FOUND: no route for the method and path
    (413, 8),  # RESOURCE_EXHAUSTED
    (429, 8),  # RESOURCE_EXHAUSTED
    (503, 14),  # UNAVAILABLE
    (504, 4),  # DEADLINE_EXCEEDED
)
UNKNOWN_CODE = 2


def descriptor_set_path() -> Path:
    """The packaged descriptor set (a real file in a wheel or an editable install)."""
    return Path(str(resources.files("switchboard_server.mesh").joinpath(DESCRIPTOR_SET)))


def transcoder_filter(grpc_services: Sequence[str], asset_root: str | None = None) -> Config:
    """The gRPC-JSON transcoder for the services the edge exposes, reading the packaged
    descriptor set, or its copy under ``asset_root`` (an Envoy image's)."""
    descriptor = (
        str(descriptor_set_path()) if asset_root is None else f"{asset_root}/{DESCRIPTOR_SET}"
    )
    return {
        "name": TRANSCODER,
        "typed_config": typed(
            "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            proto_descriptor=descriptor,
            services=list(grpc_services),
            print_options={
                "always_print_primitive_fields": True,
                "stream_newline_delimited": True,
            },
            convert_grpc_status=True,
            request_validation_options={
                "reject_unknown_query_parameters": True,
                "reject_binding_body_field_collisions": True,
            },
        ),
    }


def _rest_call() -> Config:
    """A REST call: not gRPC (nor gRPC-Web), or turned into gRPC by the transcoder.

    The transcoder rewrites the content type to ``application/grpc`` before it reads the
    body, so a body it cannot parse is refused after the rewrite; it keeps the REST path
    in ``x-envoy-original-path``. A transcoded call's gRPC errors come back through the
    transcoder (``convert_grpc_status``), not through these mappers.
    """
    not_grpc = {
        "header_filter": {
            "header": {
                "name": "content-type",
                "string_match": {"prefix": "application/grpc"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            }
        }
    }
    transcoded = {
        "header_filter": {"header": {"name": "x-envoy-original-path", "present_match": True}}
    }
    return {"or_filter": {"filters": [not_grpc, transcoded]}}


def _status_is(code: int) -> Config:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": code, "runtime_key": f"edge_rest.local_reply_{code}"},
            }
        }
    }


def _json_status(code: int, message: str) -> Config:
    return {
        "json_format": {"code": code, "message": message, "details": []},
        "content_type": "application/json",
    }


def local_reply_config() -> Config:
    """JSON ``google.rpc.Status`` bodies for the edge's own answers to REST calls."""
    rest = _rest_call()
    mappers = []
    for http_status, code in LOCAL_REPLY_CODES:
        message = "%LOCAL_REPLY_BODY%"
        if http_status == 404:
            message = f"no route for %REQ(:METHOD)% %REQ(:PATH):{ECHOED_PATH_MAX}%"
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [rest, _status_is(http_status)]}},
                "body_format_override": _json_status(code, message),
            }
        )
    other_error = {
        "status_code_filter": {
            "comparison": {
                "op": "GE",
                "value": {"default_value": 400, "runtime_key": "edge_rest.local_reply_other"},
            }
        }
    }
    mappers.append(
        {
            "filter": {"and_filter": {"filters": [rest, other_error]}},
            "body_format_override": _json_status(UNKNOWN_CODE, "%LOCAL_REPLY_BODY%"),
        }
    )
    return {"mappers": mappers}
