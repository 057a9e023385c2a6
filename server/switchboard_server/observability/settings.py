"""Settings of logging, metrics and tracing (prefix ``SWITCHBOARD_OBS_``)."""

from __future__ import annotations

from itertools import pairwise

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# go-grpc-prometheus / Prometheus client default buckets (seconds).
DEFAULT_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ObservabilitySettings(BaseSettings):
    """Metrics port, trace sampling and export, client access logs, the trace receiver."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_OBS_", frozen=True, extra="ignore")

    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Prometheus /metrics port; unset disables the endpoint, 0 picks a free port.",
    )
    otlp_endpoint: str = Field(
        default="", description="OTLP/gRPC trace endpoint (host:port); empty turns export off."
    )
    otlp_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Seconds one OTLP export may take."
    )
    export_interval_ms: int = Field(
        default=1000,
        ge=10,
        le=60_000,
        description="Longest a finished span waits in the batch processor before export.",
    )
    export_batch_size: int = Field(
        default=512, ge=1, le=65_536, description="Most spans sent in one OTLP export request."
    )
    export_queue_size: int = Field(
        default=2048,
        ge=1,
        le=1_048_576,
        description="Finished spans waiting for export at most; more are dropped.",
    )
    trace_sample_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description=(
            "Share of new traces sampled, parent-based: a caller's sampled flag wins. "
            "`switchboard up` uses SWITCHBOARD_MESH_TRACE_SAMPLE_RATIO instead."
        ),
    )
    latency_buckets_s: tuple[float, ...] = Field(
        default=DEFAULT_LATENCY_BUCKETS,
        min_length=1,
        description="Bucket bounds (seconds) of grpc_*_handling_seconds; JSON list in the env.",
    )
    slo_chat_availability: float = Field(
        default=0.999,
        ge=0.95,
        lt=1.0,
        description="Objective: share of Chat turns over 30 days answered OK and not degraded. "
        "docker/prometheus/rules/slo.yml is rendered from the SLO_* settings "
        "(scripts/slo_rules.py).",
    )
    slo_chat_latency_objective: float = Field(
        default=0.99,
        ge=0.95,
        lt=1.0,
        description="Objective: share of Chat calls over 30 days faster than SLO_CHAT_LATENCY_S.",
    )
    slo_chat_latency_s: float = Field(
        default=1.0,
        gt=0,
        description="Latency threshold of the Chat SLO; must be one of LATENCY_BUCKETS_S.",
    )
    client_access_log: bool = Field(
        default=True, description="Write one access line per outbound RPC."
    )
    receiver_port: int = Field(
        default=4317,
        ge=0,
        le=65535,
        description="Built-in trace receiver: OTLP/gRPC port (0 picks a free port).",
    )
    receiver_query_port: int = Field(
        default=4320,
        ge=0,
        le=65535,
        description="Built-in trace receiver: HTTP JSON query port, GET /traces (0 = free port).",
    )
    receiver_max_traces: int = Field(
        default=1000, ge=1, le=1_000_000, description="Traces the receiver keeps (oldest go)."
    )
    receiver_max_spans_per_trace: int = Field(
        default=2000, ge=1, le=1_000_000, description="Spans kept per trace; more are dropped."
    )
    receiver_url: str = Field(
        default="",
        description=(
            "Where `switchboard traces` queries the receiver; empty means "
            "http://<SWITCHBOARD_HOST>:<SWITCHBOARD_OBS_RECEIVER_QUERY_PORT>."
        ),
    )

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> ObservabilitySettings:
        if self.export_batch_size > self.export_queue_size:
            raise ValueError("export_batch_size must not exceed export_queue_size")
        return self

    @model_validator(mode="after")
    def _slo_threshold_is_a_bucket(self) -> ObservabilitySettings:
        if self.slo_chat_latency_s not in self.latency_buckets_s:
            raise ValueError(
                f"slo_chat_latency_s ({self.slo_chat_latency_s:g}) must be one of "
                f"latency_buckets_s {list(self.latency_buckets_s)}: the SLO counts a bucket"
            )
        return self

    @field_validator("latency_buckets_s")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(b <= a for a, b in pairwise(value)) or value[0] <= 0:
            raise ValueError("buckets must be positive and strictly increasing")
        return value
