"""The Envoy configs of a container target: the local renderer's, with the target's
addresses, plus a public scrape listener per Envoy.

A pod's Envoy admin and its app's ``/metrics`` stay on loopback (the admin can stop
Envoy); the scrape listener on ``SWITCHBOARD_DEPLOY_SCRAPE_PORT`` serves exactly
``/stats/prometheus`` and ``/ready`` from the admin and ``/metrics`` from the app, so
Prometheus and the kubelet reach those and nothing else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from switchboard_server.config import Settings
from switchboard_server.deploy.mesh_tls import (
    HEALTH_CHECK_PATH,
    container_tls,
    sds_files,
    secure_envoys,
)
from switchboard_server.mesh.addresses import AddressPlan
from switchboard_server.mesh.envoy_config import Config, address, typed
from switchboard_server.mesh.render import LOCAL_APP, render_all
from switchboard_server.mesh.topology import Plan, Replica

SCRAPE_LISTENER = "scrape"
ADMIN_CLUSTER = "envoy_admin"
METRICS_CLUSTER = "local_metrics"
EDGE = "edge"
# Where a container edge finds the JWKS of the keys that sign client tokens: Compose
# bind-mounts the `jwks/` directory `switchboard token init --out docker/auth` fills,
# Kubernetes mounts the Secret EDGE_JWKS_SECRET (key `jwks.json`).
CONTAINER_JWKS_DIR = "/etc/switchboard/jwks"
CONTAINER_JWKS_FILE = f"{CONTAINER_JWKS_DIR}/jwks.json"
EDGE_JWKS_SECRET = "switchboard-edge-jwks"
COMPOSE_JWKS_DIR = "./auth/jwks"


def container_mesh_settings(settings: Settings) -> Settings:
    """The settings a container target renders with: the edge authenticates clients
    (against SWITCHBOARD_MESH_EDGE_JWKS_URL if set, else the mounted JWKS file) unless
    SWITCHBOARD_MESH_INSECURE; a JWKS file path of the host means nothing in a container."""
    mesh = settings.mesh
    if mesh.insecure or mesh.edge_jwks_url:
        return settings
    mounted = mesh.model_copy(update={"edge_jwks_file": Path(CONTAINER_JWKS_FILE)})
    return dataclasses.replace(settings, mesh=mounted)


def mounts_jwks(settings: Settings) -> bool:
    """Whether the container edge reads its JWKS from the mounted file."""
    return container_mesh_settings(settings).mesh.edge_jwks_file is not None


def _static_cluster(name: str, port: int) -> Config:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": address("127.0.0.1", port)}}]}
            ],
        },
    }


def _route(path: str, cluster: str) -> Config:
    return {"match": {"path": path}, "route": {"cluster": cluster, "timeout": "10s"}}


def scrape_listener(host: str, port: int, *, app_metrics: bool) -> Config:
    routes = [_route("/stats/prometheus", ADMIN_CLUSTER), _route("/ready", ADMIN_CLUSTER)]
    if app_metrics:
        routes.append(_route("/metrics", METRICS_CLUSTER))
        # The probes' way in (they present no client certificate): the health Check
        # alone, to the pod's app through this sidecar (see .mesh_tls).
        routes.append(_route(HEALTH_CHECK_PATH, LOCAL_APP))
    hcm = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix=SCRAPE_LISTENER,
        codec_type="AUTO",
        route_config={
            "name": SCRAPE_LISTENER,
            "virtual_hosts": [{"name": SCRAPE_LISTENER, "domains": ["*"], "routes": routes}],
        },
        http_filters=[
            {
                "name": "envoy.filters.http.router",
                "typed_config": typed("envoy.extensions.filters.http.router.v3.Router"),
            }
        ],
    )
    return {
        "name": SCRAPE_LISTENER,
        "address": address(host, port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def add_scrape_listener(
    config: Config,
    addresses: AddressPlan,
    settings: Settings,
    *,
    admin_port: int,
    metrics_port: int | None,
) -> Config:
    """``config`` with the scrape listener and the loopback clusters it routes to."""
    resources = config["static_resources"]
    resources["listeners"].append(
        scrape_listener(
            addresses.listen_host, settings.deploy.scrape_port, app_metrics=metrics_port is not None
        )
    )
    resources["clusters"].append(_static_cluster(ADMIN_CLUSTER, admin_port))
    if metrics_port is not None:
        resources["clusters"].append(_static_cluster(METRICS_CLUSTER, metrics_port))
    return config


def render_envoys(
    plan: Plan,
    addresses: AddressPlan,
    settings: Settings,
    replicas: list[Replica],
    *,
    otlp_endpoint: str,
    trace_sample_ratio: float,
    sds_dir: str,
    rollout_root: Path | None = None,
) -> dict[str, Config]:
    """The edge's and the given replicas' sidecar configs, by name (``edge``,
    ``<replica>.sidecar``), each with its scrape listener and (unless insecure) mTLS and
    RBAC; plus the SDS files those name, by file name (``<identity>.cert`` ...), to go
    in ``sds_dir`` (the Envoy config directory). ``rollout_root``: where the callers of a
    service with variants find the rollout runtime layer (:mod:`.variants`)."""
    settings = container_mesh_settings(settings)
    configs = render_all(
        plan,
        settings.mesh,
        otlp_endpoint,
        trace_sample_ratio=trace_sample_ratio,
        addresses=addresses,
        rollout_root=rollout_root,
    )
    wanted = {f"{r.name}.sidecar": r for r in replicas}
    out = {
        EDGE: add_scrape_listener(
            configs[EDGE], addresses, settings, admin_port=plan.edge_admin_port, metrics_port=None
        )
    }
    for name, replica in wanted.items():
        out[name] = add_scrape_listener(
            configs[name],
            addresses,
            settings,
            admin_port=replica.admin_port,
            metrics_port=replica.metrics_port,
        )
    tls = container_tls(settings, sds_dir)
    if tls is not None:
        out = secure_envoys(out, plan, wanted, tls)
        for file, document in sds_files([*plan.topology.services, EDGE], tls).items():
            out[file.removesuffix(".yaml")] = document
    return out
