"""Settings of the rendered deployments (``SWITCHBOARD_DEPLOY_``): images, the scrape
port, sampling, Kubernetes resources and autoscaling.

Ports and policies come from the topology and the mesh settings, as for the local mesh;
these are only what a container deployment adds. ``switchboard render`` reads them; the
committed ``docker/compose.yaml`` and ``deploy/k8s/`` are rendered with the defaults.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi)?$"


class DeploySettings(BaseSettings):
    """What ``switchboard render --target compose|k8s`` writes besides the Envoy configs."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_DEPLOY_", frozen=True, extra="ignore")

    # -- images ----------------------------------------------------------------------------
    app_image: str = Field(default="switchboard-app:dev", description="Image of the apps.")
    envoy_image: str = Field(
        default="switchboard-envoy:dev", description="Image of the edge and the sidecars."
    )
    redis_image: str = Field(default="redis:7.4-alpine", description="Redis image.")
    prometheus_image: str = Field(
        default="prom/prometheus:v3.5.0", description="Prometheus image (Compose)."
    )
    grafana_image: str = Field(
        default="grafana/grafana:12.1.0", description="Grafana image (Compose)."
    )
    jaeger_image: str = Field(
        default="jaegertracing/jaeger:2.9.0",
        description="Jaeger (all-in-one, OTLP receiver and trace UI) image (Compose).",
    )
    # -- ports and telemetry -----------------------------------------------------------------
    scrape_port: int = Field(
        default=15020,
        ge=1,
        le=65535,
        description="Each Envoy's public scrape listener: /stats/prometheus and /ready "
        "of its admin, /metrics of its app (admin and app stay on loopback).",
    )
    compose_otlp_endpoint: str = Field(
        default="jaeger:4317", description="OTLP/gRPC endpoint in Compose (the Jaeger service)."
    )
    k8s_otlp_endpoint: str = Field(
        default="otel-collector.observability.svc:4317",
        description="OTLP/gRPC endpoint of the Kubernetes cluster's collector.",
    )
    trace_sample_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of new traces sampled in the Kubernetes base and prod overlay "
        "(parent-based: a request with a traceparent keeps its caller's decision).",
    )
    dev_trace_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces sampled in Compose and the Kubernetes dev overlay.",
    )
    dns_refresh_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often a sidecar re-resolves its callees' DNS names (new pods).",
    )
    # -- Kubernetes -----------------------------------------------------------------------
    namespace: str = Field(
        default="switchboard",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Kubernetes namespace of the mesh.",
    )
    monitoring_namespace: str = Field(
        default="monitoring",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Namespace whose Prometheus the NetworkPolicies admit to the scrape port.",
    )
    app_cpu_request: str = Field(default="250m", pattern=_QUANTITY, description="App CPU request.")
    app_cpu_limit: str = Field(default="1", pattern=_QUANTITY, description="App CPU limit.")
    app_memory_request: str = Field(
        default="256Mi", pattern=_QUANTITY, description="App memory request."
    )
    app_memory_limit: str = Field(default="1Gi", pattern=_QUANTITY, description="App memory limit.")
    envoy_cpu_request: str = Field(
        default="100m", pattern=_QUANTITY, description="Envoy CPU request."
    )
    envoy_cpu_limit: str = Field(default="500m", pattern=_QUANTITY, description="Envoy CPU limit.")
    envoy_memory_request: str = Field(
        default="64Mi", pattern=_QUANTITY, description="Envoy memory request."
    )
    envoy_memory_limit: str = Field(
        default="256Mi", pattern=_QUANTITY, description="Envoy memory limit."
    )
    hpa_min_replicas: int = Field(
        default=2, ge=1, le=100, description="Fewest replicas per service (prod overlay)."
    )
    hpa_max_replicas: int = Field(
        default=6, ge=1, le=1000, description="Most replicas per service (HPA)."
    )
    hpa_cpu_percent: int = Field(
        default=70, ge=1, le=100, description="HPA target: average CPU use of the requests."
    )
    run_as_user: int = Field(
        default=10001, ge=1, description="Non-root user id the containers run as."
    )

    @model_validator(mode="after")
    def _bounds(self) -> DeploySettings:
        if self.hpa_min_replicas > self.hpa_max_replicas:
            raise ValueError("hpa_min_replicas must not exceed hpa_max_replicas")
        return self
