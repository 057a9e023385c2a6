"""Settings of the local mesh runner and the rendered Envoy configs (``SWITCHBOARD_MESH_``).

Ports and per-method policies of each service live in the topology file (by default
``topology.yaml`` shipped in this package, linked from ``envoy/`` in the repository); the
numbers here are the knobs every sidecar shares (retries, circuit breakers, health
checking, outlier detection, the edge rate limit) and the runner's own behaviour.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What a browser sends in `Origin`: scheme, host and an optional port, nothing else.
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?")

# What a hop may add to a request's headers (x-request-id, x-forwarded-proto,
# x-envoy-expected-rq-timeout-ms, traceparent, ...) is well under this.
INGRESS_HEADERS_HEADROOM_KB = 4


class MeshSettings(BaseSettings):
    """Ports and policies of ``switchboard up`` and of every rendered Envoy config."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_MESH_", frozen=True, extra="ignore")

    # -- where things listen -------------------------------------------------------------
    topology_file: Path | None = Field(
        default=None,
        description="The topology definition to render; unset: the one shipped in the "
        "package (envoy/topology.yaml in the repository).",
    )
    host: str = Field(default="127.0.0.1", description="Address every app and Envoy binds.")
    edge_port: int = Field(default=8080, ge=1, le=65535, description="Edge Envoy gRPC port.")
    edge_admin_port: int = Field(default=9901, ge=1, le=65535, description="Edge Envoy admin port.")
    frontdoor_port: int = Field(
        default=9900,
        ge=1,
        le=65535,
        description="The front door (health and reflection behind the edge), on loopback.",
    )
    replica_port_stride: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Replica N of a service uses the topology's ports plus N times this.",
    )
    envoy_binary: str = Field(
        default="envoy", description="Envoy executable (found next to the Python first)."
    )
    envoy_concurrency: int = Field(
        default=1, ge=1, le=64, description="Worker threads per Envoy (--concurrency)."
    )
    envoy_log_level: str = Field(default="warning", description="Envoy's own log level.")
    envoy_drain_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="On stop, the longest an Envoy may drain its in-flight requests.",
    )
    envoy_log_flush_ms: int = Field(
        default=500, ge=10, description="How often Envoy flushes its access log (ms)."
    )

    # -- timeouts ------------------------------------------------------------------------
    grpc_timeout_max_s: float = Field(
        default=60.0,
        gt=0,
        description="Cap on a caller's grpc-timeout that Envoy honours (grpc_timeout_header_max).",
    )
    ops_timeout_s: float = Field(
        default=5.0, gt=0, description="Route timeout of health checks and reflection."
    )
    connect_timeout_s: float = Field(
        default=0.25, gt=0, description="Upstream TCP connect timeout."
    )

    # -- retries -------------------------------------------------------------------------
    retry_attempts: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries after the first try; of a write without its key in the "
        "x-switchboard-request-id header, only of a request that never reached an app.",
    )
    retry_per_try_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Deadline of one try of an idempotent method without its own per_try_timeout_s "
            "in the topology; a method whose timeout shared among its tries is longer gets "
            "that share instead."
        ),
    )
    retry_backoff_base_s: float = Field(
        default=0.025, gt=0, description="Retry back-off base interval (jittered, doubling)."
    )
    retry_backoff_max_s: float = Field(
        default=0.25, gt=0, description="Retry back-off maximum interval."
    )
    retry_budget_percent: float = Field(
        default=20.0,
        gt=0,
        le=100,
        description="Active retries allowed as a percentage of active requests.",
    )
    retry_min_concurrency: int = Field(
        default=10,
        ge=1,
        description="Retries always allowed concurrently, whatever the budget.",
    )

    # -- load balancing --------------------------------------------------------------------
    lb_choice_count: int = Field(
        default=2,
        ge=2,
        le=100,
        description="Least-request balancing: random hosts compared per pick (power of two "
        "choices by default).",
    )
    lb_update_merge_window_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="How long Envoy may hold back health-check and ejection changes before "
        "its load balancer sees them (Envoy's own default is 1 s); 0: at once.",
    )

    # -- circuit breakers ----------------------------------------------------------------
    cb_max_connections: int = Field(
        default=1024, ge=1, description="Circuit breaker: connections per upstream cluster."
    )
    cb_max_pending_requests: int = Field(
        default=64, ge=1, description="Circuit breaker: requests queued for a connection."
    )
    cb_max_requests: int = Field(
        default=256, ge=1, description="Circuit breaker: concurrent requests per cluster."
    )
    cb_max_retries: int = Field(
        default=16, ge=1, description="Circuit breaker: concurrent retries per cluster."
    )

    # -- request size --------------------------------------------------------------------
    max_request_headers_kb: int = Field(
        default=60,
        ge=1,
        le=4096,
        description="Largest request header block (KiB) the edge and egress listeners accept; "
        "sidecar ingress accepts 4 KiB more. Over it Envoy resets the stream.",
    )

    @property
    def ingress_headers_kb(self) -> int:
        """The header limit of a sidecar's ingress: a little over the edge's and the
        egress listeners', so what one hop forwards is never reset by the next."""
        return self.max_request_headers_kb + INGRESS_HEADERS_HEADROOM_KB

    # -- outlier detection -----------------------------------------------------------------
    outlier_consecutive_5xx: int = Field(
        default=5,
        ge=1,
        description="Consecutive 5xx the app answered (INTERNAL, UNKNOWN, UNAVAILABLE, "
        "DEADLINE_EXCEEDED, ...) that eject a host.",
    )
    outlier_consecutive_gateway_failure: int = Field(
        default=3,
        ge=1,
        description="Consecutive UNAVAILABLE/DEADLINE_EXCEEDED the app answered that eject.",
    )
    outlier_consecutive_local_origin_failure: int = Field(
        default=3,
        ge=1,
        description="Consecutive connect failures, resets and timeouts that eject a host.",
    )
    outlier_interval_s: float = Field(
        default=1.0, gt=0, description="Outlier detection sweep interval."
    )
    outlier_base_ejection_s: float = Field(
        default=5.0, gt=0, description="Base ejection time (multiplied by ejection count)."
    )
    outlier_max_ejection_percent: int = Field(
        default=50, ge=0, le=100, description="Most hosts of a cluster that may be ejected."
    )

    # -- chaos testing ---------------------------------------------------------------------
    fault_injection: bool = Field(
        default=False,
        description="Each sidecar's ingress carries Envoy's fault filter, inert until its "
        "runtime keys (fault.http.abort.abort_percent, fault.http.abort.grpc_status, "
        "fault.http.delay.fixed_delay_percent, fault.http.delay.fixed_duration_ms) are set "
        "through that sidecar's admin /runtime_modify; for the chaos suite, off in production.",
    )

    # -- active health checking ------------------------------------------------------------
    health_interval_s: float = Field(
        default=1.0, gt=0, description="Active gRPC health check interval."
    )
    health_timeout_s: float = Field(default=1.0, gt=0, description="Health check timeout.")
    health_unhealthy_threshold: int = Field(
        default=2, ge=1, description="Failed checks before a host is marked unhealthy."
    )
    health_healthy_threshold: int = Field(
        default=1, ge=1, description="Passed checks before a host is healthy again."
    )

    # -- edge rate limit -------------------------------------------------------------------
    edge_rate_limit_rps: int = Field(
        default=2000,
        ge=0,
        description="Edge local rate limit, requests per second; 0 turns it off.",
    )
    edge_rate_limit_burst: int = Field(
        default=4000, ge=1, description="Edge rate limit bucket size (burst)."
    )

    # -- edge authentication (see docs/security.md, "Edge") ------------------------------
    edge_jwks_file: Path | None = Field(
        default=None,
        description="JWKS file of the keys that sign client tokens; unset (and no "
        "EDGE_JWKS_URL): `switchboard up` mints a development key pair and token under "
        "<data_dir>/mesh/auth.",
    )
    edge_jwks_url: str = Field(
        default="",
        description="JWKS URL (https://...) fetched and cached by the edge, instead of a file.",
    )
    edge_jwks_cache_s: int = Field(
        default=300, ge=1, description="How long the edge caches a JWKS fetched from the URL."
    )
    edge_jwt_issuer: str = Field(
        default="switchboard-dev", min_length=1, description="Required `iss` of client tokens."
    )
    edge_jwt_audience: str = Field(
        default="switchboard", min_length=1, description="Required `aud` of client tokens."
    )
    edge_public_health: bool = Field(
        default=True, description="gRPC health at the edge needs no token (probes)."
    )
    edge_public_reflection: bool = Field(
        default=True, description="Server reflection at the edge needs no token (grpcurl)."
    )
    edge_client_rate_limit_rps: int = Field(
        default=500,
        ge=0,
        description="Per-client (token subject) rate limit at the edge, requests per "
        "second; 0 turns it off.",
    )
    edge_client_rate_limit_burst: int = Field(
        default=1000, ge=1, description="Per-client token bucket size (burst)."
    )
    edge_client_rate_limit_max_clients: int = Field(
        default=10_000,
        ge=1,
        description="Most clients with a bucket of their own at once (least recently used "
        "first out).",
    )
    dev_token_ttl_s: int = Field(
        default=86_400, ge=60, description="Lifetime of the development token `up` mints."
    )
    edge_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain the edge serves (TLS 1.2+); with EDGE_TLS_KEY_FILE "
        "turns on TLS termination at the edge. Unset: plaintext.",
    )
    edge_tls_key_file: Path | None = Field(
        default=None, description="PEM private key of EDGE_TLS_CERT_FILE."
    )

    @property
    def edge_auth(self) -> bool:
        """Whether the rendered edge authenticates clients."""
        return not self.insecure and (self.edge_jwks_file is not None or bool(self.edge_jwks_url))

    @property
    def edge_tls(self) -> bool:
        return self.edge_tls_cert_file is not None and self.edge_tls_key_file is not None

    # -- browsers at the edge ------------------------------------------------------------
    cors_allowed_origins: tuple[str, ...] = Field(
        default=(),
        description='Origins (JSON list, e.g. ["https://chat.example.com"]; "*" for '
        "any) whose pages may call the edge with gRPC-Web or REST, besides the edge's own "
        "web page, which is always allowed.",
    )
    cors_max_age_s: int = Field(
        default=600,
        ge=0,
        le=86_400,
        description="How long a browser may cache a CORS preflight answer "
        "(Access-Control-Max-Age, seconds).",
    )

    # -- the edge's REST/JSON front door ---------------------------------------------------
    edge_rest: bool = Field(
        default=True,
        description="The edge transcodes REST/JSON calls (the google.api.http routes in the "
        "protos) to gRPC; false serves gRPC only.",
    )

    trace_flush_spans: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Envoy sends its buffered spans to the collector once this many are "
        "waiting (runtime tracing.opentelemetry.min_flush_spans; Envoy's default, 5, "
        "costs one export call per 5 spans).",
    )
    trace_flush_interval_ms: int = Field(
        default=1000,
        ge=10,
        le=60_000,
        description="...or at least this often (runtime tracing.opentelemetry.flush_interval_ms).",
    )
    trace_upstream_spans: bool = Field(
        default=False,
        description="Envoy also records a CLIENT span per upstream attempt (each retry "
        "its own span; twice the Envoy spans). Off: one span per Envoy hop, SERVER on "
        "ingress and the edge, CLIENT on egress; retries still show in access logs and "
        "stats.",
    )

    # -- identities and mutual TLS between sidecars (docs/security.md) ---------------------
    insecure: bool = Field(
        default=False,
        description="The old open mesh (`switchboard up --insecure`): plaintext between "
        "sidecars, no identities, no RBAC, no client tokens or per-client limit at the edge; "
        "off: mutual TLS with SPIFFE identities and per-method RBAC on every sidecar ingress, "
        "JWT client authentication at the edge.",
    )
    certs_dir: Path | None = Field(
        default=None,
        description="Where the mesh CA and each identity's tls.crt/tls.key/ca.crt live "
        "(one directory per identity); unset: <data dir>/mesh/certs.",
    )
    trust_domain: str = Field(
        default="switchboard.local",
        pattern=r"^[a-z0-9.-]+$",
        description="SPIFFE trust domain of every identity (spiffe://DOMAIN/ns/NS/sa/NAME).",
    )
    namespace: str = Field(
        default="switchboard",
        pattern=r"^[a-z0-9-]+$",
        description="Namespace part of every SPIFFE id.",
    )
    cert_ttl_h: float = Field(
        default=24.0, gt=0, le=8760, description="Lifetime of a workload certificate (hours)."
    )
    ca_ttl_days: float = Field(
        default=365.0, gt=0, description="Lifetime of a mesh CA that `switchboard` creates (days)."
    )
    cert_rotate_fraction: float = Field(
        default=2 / 3,
        gt=0,
        lt=1,
        description="A certificate is reissued once this share of its lifetime has passed.",
    )
    cert_check_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often `switchboard up` checks whether certificates need rotating.",
    )
    ca_cert_file: Path | None = Field(
        default=None,
        description="Bring your own CA: its PEM certificate (with SWITCHBOARD_MESH_CA_KEY_FILE); "
        "unset: a mesh CA created under the certs dir.",
    )
    ca_key_file: Path | None = Field(
        default=None,
        description="Bring your own CA: its unencrypted PEM EC private key.",
    )

    # -- the runner ------------------------------------------------------------------------
    app_module: str = Field(
        default="switchboard_server",
        description="Module run as `python -m MODULE <service>` for each app.",
    )
    trace_receiver: bool = Field(
        default=True,
        description="Run the built-in trace receiver when SWITCHBOARD_OBS_OTLP_ENDPOINT is empty.",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces the local mesh samples, in its apps and its Envoys "
        "alike (it replaces SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO there): every turn by "
        "default, so `switchboard traces` shows each one.",
    )
    startup_timeout_s: float = Field(
        default=120.0, gt=0, description="How long `switchboard up` waits for every health."
    )
    restart_backoff_initial_s: float = Field(
        default=0.5, gt=0, description="First back-off before restarting a dead child."
    )
    restart_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest back-off before restarting a dead child."
    )
    restart_reset_after_s: float = Field(
        default=30.0, gt=0, description="A child up this long has its back-off reset."
    )
    stop_timeout_s: float = Field(
        default=10.0, gt=0, description="Wait for a child after SIGTERM before SIGKILL."
    )

    # -- rollouts (docs/rollouts.md) -------------------------------------------------------
    rollout_comparator_port: int = Field(
        default=9920,
        ge=1,
        le=65535,
        description="UDP port of the shadow comparator (run when a service has variants).",
    )
    rollout_comparator_metrics_port: int = Field(
        default=9921, ge=1, le=65535, description="Prometheus port of the shadow comparator."
    )
    rollout_comparator_max_pending: int = Field(
        default=10_000,
        ge=1,
        description="Requests the comparator holds waiting for their other half (oldest "
        "evicted first): its memory bound.",
    )
    rollout_window_s: float = Field(
        default=30.0, gt=0, description="`rollout watch`: the window each check compares over."
    )
    rollout_min_requests: int = Field(
        default=20, ge=1, description="Calls a variant needs in a window before it is judged."
    )
    rollout_max_error_rate_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Roll back when the candidate's error rate exceeds stable's by this "
        "much (0.05: five points).",
    )
    rollout_max_p99_margin_ms: float = Field(
        default=100.0,
        ge=0,
        description="Roll back when the candidate's p99 latency exceeds stable's by this.",
    )

    @model_validator(mode="after")
    def _own_ca(self) -> MeshSettings:
        if (self.ca_cert_file is None) != (self.ca_key_file is None):
            raise ValueError(
                "ca_cert_file and ca_key_file: set both (bring your own CA) or neither"
            )
        return self

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f'{origin!r} is not an origin: scheme://host[:port], no path, or "*"'
                )
        return value
