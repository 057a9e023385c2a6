"""``switchboard render --target compose``: ``compose.yaml``, the Envoy configs it mounts
and Prometheus's scrape config.

Per replica two services share one network namespace, like a pod: the Envoy sidecar
owns it (``classification-0``, the name callers resolve) and the app joins it
(``classification-0-app`` with ``network_mode: service:classification-0``). The sidecar
owns the namespace, not the app, because Docker does not move joined containers to a
restarted owner's new namespace: a killed app restarts into its sidecar's namespace
and the pod answers again, as a Kubernetes pod's containers do around its pause
container. Replicas are explicit services (``classification-1`` ...), not a scaled
service, so each has its own sidecar and the callers' Envoys health-check and eject
each one (see :mod:`.addresses`).

An app is healthy when a ``grpc.health.v1`` Check through its sidecar answers SERVING
(so both run), the edge's front door when one through the edge does (every exposed
service routable); ``depends_on: service_healthy`` orders startup on those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from switchboard_server.config import Settings
from switchboard_server.deploy.addresses import compose_addresses, container_plan
from switchboard_server.deploy.envoy import (
    COMPOSE_JWKS_DIR,
    CONTAINER_JWKS_DIR,
    EDGE,
    mounts_jwks,
    render_envoys,
)
from switchboard_server.deploy.mesh_tls import COMPOSE_CERTS_DIR, identity_mount
from switchboard_server.deploy.pods import (
    DATA_DIR,
    ENVOY_CONFIG_DIR,
    app_command,
    app_env,
    envoy_command,
    frontdoor_command,
    health_command,
)
from switchboard_server.deploy.variants import (
    COMPARATOR,
    COMPOSE_ROLLOUT_DIR,
    ROLLOUT_MOUNT,
    VARIANT_LABEL,
    callees_with_variants,
    comparator_address,
    comparator_command,
    comparator_healthcheck,
    with_variants,
)
from switchboard_server.mesh.envoy_config import Config
from switchboard_server.mesh.rollout.variants import variant_env
from switchboard_server.mesh.topology import Plan, Topology

PROJECT = "switchboard"
JAEGER = "jaeger"
REDIS = "redis"
PROMETHEUS = "prometheus"
GRAFANA = "grafana"
JAEGER_UI_PORT = 16686
OTLP_GRPC_PORT = 4317
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
REDIS_PORT = 6379
HEALTHCHECK = {"interval": "5s", "timeout": "3s", "retries": 3, "start_period": "60s"}


class ComposeRender:
    """Every file of the Compose target, by path relative to the output directory."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.settings = settings
        self.deploy = settings.deploy
        self.plan: Plan = container_plan(topology, settings)
        self.addresses = compose_addresses(self.plan, settings)
        self.variants = with_variants(topology)

    def envoy_configs(self) -> dict[str, Config]:
        return render_envoys(
            self.plan,
            self.addresses,
            self.settings,
            self.plan.all_replicas(),
            otlp_endpoint=self.deploy.compose_otlp_endpoint,
            trace_sample_ratio=self.deploy.dev_trace_sample_ratio,
            sds_dir=ENVOY_CONFIG_DIR,
            rollout_root=Path(ROLLOUT_MOUNT) if self.variants else None,
        )

    def compose(self) -> dict[str, Any]:
        services: dict[str, Any] = {}
        services.update(self._infrastructure())
        if self.variants:
            services[COMPARATOR] = {
                "image": self.deploy.app_image,
                "init": True,
                "restart": "unless-stopped",
                "command": comparator_command(self.settings),
                "healthcheck": {"test": comparator_healthcheck(self.settings), **HEALTHCHECK},
                "environment": {"SWITCHBOARD_LOG_FORMAT": "json"},
                "read_only": True,
                "tmpfs": ["/tmp"],
            }
        volumes: dict[str, Any] = {}
        for replica in self.plan.all_replicas():
            sidecar = replica.name
            app = f"{replica.name}-app"
            services[sidecar] = self._envoy(
                f"{sidecar}.sidecar", {JAEGER: "service_started"}, replica.service
            )
            if callees_with_variants(self.plan.topology, replica.service):
                # The rollout policy `switchboard rollout ... --dir docker/rollout` writes.
                services[sidecar]["volumes"].append(f"{COMPOSE_ROLLOUT_DIR}:{ROLLOUT_MOUNT}:ro")
            depends = {sidecar: "service_started", JAEGER: "service_started"}
            for callee in self.plan.topology.services[replica.service].calls:
                depends.update(
                    {f"{r.name}-app": "service_healthy" for r in self.plan.replicas[callee]}
                )
            env = app_env(
                replica,
                otlp_endpoint=self.deploy.compose_otlp_endpoint,
                trace_sample_ratio=self.deploy.dev_trace_sample_ratio,
                drain_delay_s=self.settings.mesh.app_drain_delay_s,
            )
            spec = self.plan.topology.services[replica.service]
            if spec.variants:  # its variant's model; every answer to the comparator
                env.update(
                    variant_env(spec, replica, Path(DATA_DIR), comparator_address(self.settings))
                )
                depends[COMPARATOR] = "service_started"
            if replica.service == "context":
                env["SWITCHBOARD_CONTEXT_STORE"] = "redis"
                env["SWITCHBOARD_CONTEXT_REDIS_URL"] = f"redis://{REDIS}:{REDIS_PORT}/0"
                depends[REDIS] = "service_healthy"
            volumes[f"{app}-data"] = {}
            services[app] = {
                "image": self.deploy.app_image,
                "init": True,
                "restart": "unless-stopped",
                "network_mode": f"service:{sidecar}",
                "command": app_command(replica.service),
                "environment": env,
                "read_only": True,
                "tmpfs": ["/tmp"],
                "volumes": [f"{app}-data:{DATA_DIR}"],
                "healthcheck": {
                    # Through the sidecar's plaintext health route: its mTLS ingress
                    # wants a client certificate no healthcheck has.
                    "test": ["CMD", *health_command(self.deploy.scrape_port)],
                    **HEALTHCHECK,
                },
                "depends_on": _depends(depends),
            }
            if spec.variants:  # `docker ps --filter label=switchboard.dev/variant=candidate`
                for name in (sidecar, app):
                    services[name]["labels"] = {VARIANT_LABEL: replica.variant}
        edge_ports = [f"{self.settings.mesh.edge_port}:{self.plan.edge_port}"]
        services[EDGE] = {
            **self._envoy(EDGE, {JAEGER: "service_started"}, EDGE),
            "ports": edge_ports,
        }
        if mounts_jwks(self.settings):
            # Filled by `switchboard token init --out docker/auth` (public keys only).
            services[EDGE]["volumes"].append(f"{COMPOSE_JWKS_DIR}:{CONTAINER_JWKS_DIR}:ro")
        services[f"{EDGE}-frontdoor"] = {
            "image": self.deploy.app_image,
            "init": True,
            "restart": "unless-stopped",
            "network_mode": f"service:{EDGE}",
            "command": frontdoor_command(self.plan),
            "environment": {"SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_LOG_FORMAT": "json"},
            "read_only": True,
            "tmpfs": ["/tmp"],
            "healthcheck": {"test": ["CMD", *health_command(self.plan.edge_port)], **HEALTHCHECK},
            "depends_on": _depends(
                {EDGE: "service_started"}
                | {
                    f"{r.name}-app": "service_healthy"
                    for name in self.plan.topology.edge_routes
                    for r in self.plan.replicas[name]
                }
            ),
        }
        volumes.update({"redis-data": {}, "prometheus-data": {}, "grafana-data": {}})
        # No top-level `name` (Debian's docker-compose 1.29 refuses it): the project
        # name comes from the .env file beside compose.yaml.
        return {"services": services, "volumes": volumes}

    def _envoy(self, config_name: str, depends: dict[str, str], identity: str) -> dict[str, Any]:
        volumes = [f"./envoy:{ENVOY_CONFIG_DIR}:ro"]
        if not self.settings.mesh.insecure:
            # Its own identity only, from `switchboard certs init --out docker/certs`.
            volumes.append(f"{COMPOSE_CERTS_DIR}/{identity}:{identity_mount(identity)}:ro")
        return {
            "image": self.deploy.envoy_image,
            "init": True,
            "restart": "unless-stopped",
            "command": envoy_command(config_name, self.settings),
            "environment": {"SWITCHBOARD_ENVOY_NAME": config_name},
            "read_only": True,
            "volumes": volumes,
            "depends_on": _depends(depends),
        }

    def _infrastructure(self) -> dict[str, Any]:
        return {
            REDIS: {
                "image": self.deploy.redis_image,
                "init": True,
                "restart": "unless-stopped",
                "command": ["redis-server", "--appendonly", "yes", "--appendfsync", "always"],
                "volumes": ["redis-data:/data"],
                "healthcheck": {"test": ["CMD", "redis-cli", "ping"], **HEALTHCHECK},
            },
            JAEGER: {
                "image": self.deploy.jaeger_image,
                "init": True,
                "restart": "unless-stopped",
                # Jaeger v2's OTLP receiver listens on localhost unless told otherwise.
                "command": [
                    "--set",
                    f"receivers.otlp.protocols.grpc.endpoint=0.0.0.0:{OTLP_GRPC_PORT}",
                ],
                "ports": [f"{JAEGER_UI_PORT}:{JAEGER_UI_PORT}"],
            },
            PROMETHEUS: {
                "image": self.deploy.prometheus_image,
                "init": True,
                "restart": "unless-stopped",
                "command": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--enable-feature=exemplar-storage",
                    "--web.enable-lifecycle",
                ],
                "ports": [f"{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"],
                "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus"],
            },
            GRAFANA: {
                "image": self.deploy.grafana_image,
                "init": True,
                "restart": "unless-stopped",
                "environment": {
                    "GF_AUTH_ANONYMOUS_ENABLED": "true",
                    "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
                },
                "ports": [f"{GRAFANA_PORT}:{GRAFANA_PORT}"],
                "volumes": [
                    "./grafana/provisioning:/etc/grafana/provisioning:ro",
                    "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
                    "grafana-data:/var/lib/grafana",
                ],
                "depends_on": _depends({PROMETHEUS: "service_started", JAEGER: "service_started"}),
            },
        }

    def prometheus(self) -> dict[str, Any]:
        """Scrape config: every app's /metrics and every Envoy's /stats/prometheus, all
        on the scrape port of the pod's sidecar (or the edge)."""
        port = self.deploy.scrape_port
        apps = [
            {"targets": [f"{r.name}:{port}"], "labels": {"service": r.service, "component": "app"}}
            for r in self.plan.all_replicas()
        ]
        envoys = [{"targets": [f"{EDGE}:{port}"], "labels": {"service": EDGE, "component": EDGE}}]
        envoys += [
            {
                "targets": [f"{r.name}:{port}"],
                "labels": {"service": r.service, "component": "sidecar"},
            }
            for r in self.plan.all_replicas()
        ]
        jobs = []
        if self.variants:
            jobs.append(
                {
                    "job_name": "switchboard-rollout",
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {"targets": [f"{COMPARATOR}:{port}"], "labels": {"component": COMPARATOR}}
                    ],
                }
            )
        return {
            "global": {
                "scrape_interval": "15s",
                "scrape_timeout": "10s",
                "evaluation_interval": "15s",
                "external_labels": {"mesh": PROJECT},
            },
            "rule_files": ["rules/*.yml"],
            "scrape_configs": [
                {"job_name": "switchboard-app", "metrics_path": "/metrics", "static_configs": apps},
                {
                    "job_name": "switchboard-envoy",
                    "metrics_path": "/stats/prometheus",
                    "static_configs": envoys,
                },
                *jobs,
            ],
        }


def _depends(conditions: dict[str, str]) -> dict[str, Any]:
    return {name: {"condition": condition} for name, condition in sorted(conditions.items())}
