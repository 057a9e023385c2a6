"""The edge's front door for browsers: gRPC-Web, CORS and the web chat page.

Browsers cannot speak gRPC. Envoy's ``grpc_web`` filter turns a gRPC-Web call
(``application/grpc-web+proto`` or ``-text``, unary or server streaming) into gRPC to the
upstream, and the answer back into gRPC-Web, the trailers becoming the last frame.
The ``cors`` filter answers the preflights of the allowed origins at the edge and adds
the CORS headers, with the gRPC status and correlation-id headers exposed, to their
calls; a preflight from any other origin is answered without them, so the browser
refuses the call and the app never sees it.

The chat page under ``web/`` is served by the edge itself (``direct_response`` bodies
read from the files when Envoy loads its config), so it needs no other server. Its own
origin is always allowed; ``SWITCHBOARD_MESH_CORS_ALLOWED_ORIGINS`` adds others.
"""

from __future__ import annotations

from pathlib import Path

from switchboard_server.mesh.envoy_config import Config, seconds, typed
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan

WEB_DIR = Path(__file__).parent.parent / "web"
INDEX = "index.html"

# What a gRPC-Web or REST page may send, and what it may read of the answer.
CORS_ALLOW_METHODS = "GET, POST"
CORS_ALLOW_HEADERS = (
    "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-correlation-id, "
    "x-accept-content-transfer-encoding, x-accept-response-streaming"
)
CORS_EXPOSE_HEADERS = (
    "grpc-status, grpc-message, grpc-status-details-bin, x-correlation-id, x-request-id"
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
# protobuf.js compiles its encoders and decoders with `new Function`, hence
# 'unsafe-eval'; everything else comes from the edge itself.
PAGE_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def web_filters() -> list[Config]:
    """The filters that go first on the edge: CORS, then gRPC-Web."""
    return [
        {
            "name": "envoy.filters.http.cors",
            "typed_config": typed("envoy.extensions.filters.http.cors.v3.Cors"),
        },
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
        },
    ]


def page_origin(plan: Plan) -> str:
    """The origin of the edge's own page, as a browser sends it in ``Origin``."""
    host = f"[{plan.host}]" if ":" in plan.host else plan.host
    return f"http://{host}:{plan.edge_port}"


def allowed_origins(plan: Plan, settings: MeshSettings) -> list[str]:
    """The page's own origin, then the configured ones, without repeats."""
    return list(dict.fromkeys([page_origin(plan), *settings.cors_allowed_origins]))


def cors_virtual_host_config(plan: Plan, settings: MeshSettings) -> Config:
    """``typed_per_filter_config`` of the edge's virtual host: its CORS policy."""
    policy = typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": o} for o in allowed_origins(plan, settings)],
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=str(settings.cors_max_age_s),
        allow_credentials=False,
        # A refused origin's preflight is answered here, without CORS headers, rather
        # than forwarded to an app that has nothing to say about it.
        forward_not_matching_preflights=False,
    )
    return {"envoy.filters.http.cors": policy}


def preflight_route(cluster: str, settings: MeshSettings) -> Config:
    """Matches every CORS preflight, so the CORS filter (which needs a route) answers it.

    The filter answers every preflight that carries an ``Origin``, allowed or not, so
    the cluster is never called.
    """
    return {
        "name": "cors_preflight",
        "match": {
            "prefix": "/",
            "headers": [
                {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                {"name": "origin", "present_match": True},
                {"name": "access-control-request-method", "present_match": True},
            ],
        },
        "route": {"cluster": cluster, "timeout": seconds(settings.ops_timeout_s)},
    }


def page_files() -> dict[str, Path]:
    """URL path -> file for every file of the page; ``/`` is the index."""
    files = {}
    for path in sorted(WEB_DIR.rglob("*")):
        if not path.is_file() or path.suffix not in CONTENT_TYPES:
            continue
        rel = path.relative_to(WEB_DIR).as_posix()
        files["/" if rel == INDEX else f"/{rel}"] = path
    return files


def _header(key: str, value: str) -> Config:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def page_routes(asset_root: str | None = None) -> list[Config]:
    """One route per file of the page, answered by the edge from the file: this
    package's file, or its copy under ``<asset_root>/web/`` (an Envoy image's)."""
    routes = []
    for url, path in page_files().items():
        filename = (
            str(path.resolve())
            if asset_root is None
            else f"{asset_root}/web/{path.relative_to(WEB_DIR).as_posix()}"
        )
        headers = [
            _header("content-type", CONTENT_TYPES[path.suffix]),
            # No ETag on a direct response: revalidate, so a new release shows at once.
            _header("cache-control", "no-cache"),
            _header("x-content-type-options", "nosniff"),
            _header("referrer-policy", "no-referrer"),
        ]
        if path.suffix == ".html":
            headers.append(_header("content-security-policy", PAGE_CSP))
        routes.append(
            {
                "name": f"web:{url}",
                "match": {"path": url},
                "direct_response": {"status": 200, "body": {"filename": filename}},
                "response_headers_to_add": headers,
            }
        )
    return routes


def page_route_config() -> Config:
    """Route-configuration fields the page needs: room for its largest file (Envoy
    refuses a direct-response body over 4 KiB by default)."""
    largest = max(path.stat().st_size for path in page_files().values())
    return {"max_direct_response_body_size_bytes": largest}
