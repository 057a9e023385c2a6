"""``switchboard stats``: a readable summary of every Envoy admin's cluster stats."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from switchboard_server.mesh.envoy import cluster_hosts, counters

# (column, stat suffix under cluster.<name>.)
COLUMNS = (
    ("requests", "upstream_rq_total"),
    ("5xx", "upstream_rq_5xx"),
    ("retries", "upstream_rq_retry"),
    ("retry_ok", "upstream_rq_retry_success"),
    ("retry_overflow", "upstream_rq_retry_overflow"),
    ("cb_overflow", "upstream_rq_pending_overflow"),
    ("cx_overflow", "upstream_cx_overflow"),
    ("timeouts", "upstream_rq_timeout"),
    ("ejections", "outlier_detection.ejections_enforced_total"),
    ("hc_failures", "health_check.failure"),
)
SKIPPED_CLUSTERS = ("otlp_collector",)


async def envoy_summary(client: httpx.AsyncClient, name: str, admin_port: int) -> dict[str, Any]:
    """Per cluster of one Envoy: the COLUMNS counters and each host's health."""
    try:
        stats, hosts = await asyncio.gather(
            counters(client, admin_port), cluster_hosts(client, admin_port)
        )
    except httpx.HTTPError as exc:
        return {"envoy": name, "admin_port": admin_port, "error": type(exc).__name__}
    clusters = []
    for cluster, members in sorted(hosts.items()):
        if cluster in SKIPPED_CLUSTERS:
            continue
        row: dict[str, Any] = {"cluster": cluster}
        for column, suffix in COLUMNS:
            row[column] = stats.get(f"cluster.{cluster}.{suffix}", 0)
        row["hosts"] = [
            {"address": address, "health": "healthy" if not flags else ",".join(flags)}
            for address, flags, _ in members
        ]
        clusters.append(row)
    summary: dict[str, Any] = {"envoy": name, "admin_port": admin_port, "clusters": clusters}
    limited = stats.get("edge_rate_limit.http_local_rate_limit.rate_limited")
    if limited is not None:
        summary["rate_limited"] = limited
    return summary


async def collect(admins: dict[str, int]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        return list(
            await asyncio.gather(
                *(envoy_summary(client, name, port) for name, port in admins.items())
            )
        )


def format_summary(summaries: list[dict[str, Any]]) -> str:
    headers = ["envoy", "cluster", *(c for c, _ in COLUMNS), "hosts"]
    rows: list[list[str]] = []
    for summary in summaries:
        if "error" in summary:
            rows.append([summary["envoy"], f"unreachable ({summary['error']})"])
            continue
        for cluster in summary["clusters"]:
            hosts = " ".join(f"{h['address']}={h['health']}" for h in cluster["hosts"])
            rows.append(
                [
                    summary["envoy"],
                    cluster["cluster"],
                    *(str(cluster[c]) for c, _ in COLUMNS),
                    hosts,
                ]
            )
        if "rate_limited" in summary:
            rows.append([summary["envoy"], f"rate limited: {summary['rate_limited']}"])
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) == len(headers):
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        if len(row) == len(headers):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        else:
            lines.append("  ".join(row))
    return "\n".join(lines)
