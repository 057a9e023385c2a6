"""What every container target runs in one "pod": the app's command and environment,
Envoy's command line, the front door beside the edge, and the health command.

The same processes as ``switchboard up`` (:mod:`switchboard_server.mesh.runner`), with
the ports of the topology: an app on loopback, its sidecar's ingress public, egress
listeners on loopback for the app's callees.
"""

from __future__ import annotations

from switchboard_server.config import Settings
from switchboard_server.mesh.edge.frontdoor import exposed_services
from switchboard_server.mesh.topology import Plan, Replica

DATA_DIR = "/data"  # the app image's writable volume
ENVOY_CONFIG_DIR = "/etc/envoy"
HEALTH_COMMAND = "switchboard-health"  # the app image's grpc.health.v1 client
_ENVOY_LOG_LEVELS = {"warning": "warn"}


def app_command(service: str) -> list[str]:
    return ["python", "-m", "switchboard_server", service]


def app_env(
    replica: Replica, *, otlp_endpoint: str, trace_sample_ratio: float, drain_delay_s: float
) -> dict[str, str]:
    env = {
        "SWITCHBOARD_HOST": "127.0.0.1",
        "SWITCHBOARD_PORT": str(replica.app_port),
        "SWITCHBOARD_DATA_DIR": DATA_DIR,
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_OBS_METRICS_PORT": str(replica.metrics_port),
        "SWITCHBOARD_OBS_OTLP_ENDPOINT": otlp_endpoint,
        "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO": str(trace_sample_ratio),
        "SWITCHBOARD_DRAIN_DELAY_S": str(drain_delay_s),
    }
    for callee, port in replica.egress_ports.items():
        env[f"SWITCHBOARD_{replica.service.upper()}_{callee.upper()}_TARGET"] = f"127.0.0.1:{port}"
    return env


def envoy_command(config_name: str, settings: Settings) -> list[str]:
    """Envoy in a container: no hot restart (one Envoy per container, no shared memory
    to set up), the local mesh's log level, concurrency and drain time."""
    mesh = settings.mesh
    return [
        "envoy",
        "-c",
        f"{ENVOY_CONFIG_DIR}/{config_name}.yaml",
        "--log-level",
        _ENVOY_LOG_LEVELS.get(mesh.envoy_log_level, mesh.envoy_log_level),
        "--concurrency",
        str(mesh.envoy_concurrency),
        "--disable-hot-restart",
        "--drain-time-s",
        str(max(1, round(mesh.envoy_drain_s))),
        "--file-flush-interval-msec",
        str(mesh.envoy_log_flush_ms),
    ]


def frontdoor_command(plan: Plan) -> list[str]:
    argv = ["python", "-m", "switchboard_server.frontdoor"]
    argv += ["--port", str(plan.frontdoor_port), "--edge-admin-port", str(plan.edge_admin_port)]
    for service, cluster in exposed_services(plan.topology).items():
        argv += ["--expose", f"{service}={cluster}"]
    return argv


def health_command(port: int) -> list[str]:
    """A real ``grpc.health.v1`` Check (overall) on loopback ``port``."""
    return [HEALTH_COMMAND, "--address", f"127.0.0.1:{port}"]
