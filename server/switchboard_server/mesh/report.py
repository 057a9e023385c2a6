"""Tables for ``switchboard up``/``status`` and the live health probes behind them."""

from __future__ import annotations

import asyncio

import httpx

from switchboard_server.mesh.health import envoy_ready, probe_grpc
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.mesh.state import MeshState, ProcessInfo


async def _probe(client: httpx.AsyncClient, process: ProcessInfo) -> str:
    if not process.pid or not pid_alive(process.pid):
        return "DEAD"
    kind, target = process.probe.get("kind"), str(process.probe.get("target", ""))
    if kind == "grpc":
        return await probe_grpc(process.probe)
    if kind == "envoy":
        return await envoy_ready(client, int(target))
    try:
        reply = await client.get(target, timeout=1.0)
    except httpx.HTTPError:
        return "UNREACHABLE"
    return "SERVING" if reply.status_code == 200 else f"HTTP_{reply.status_code}"


async def probe_all(state: MeshState) -> dict[str, str]:
    """Health of every process by name (SERVING when fine)."""
    async with httpx.AsyncClient() as client:
        results = await asyncio.gather(*(_probe(client, p) for p in state.processes))
    return {p.name: r for p, r in zip(state.processes, results, strict=True)}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def status_table(state: MeshState, health: dict[str, str]) -> str:
    rows = [
        [p.name, p.role, str(p.pid or "-"), str(p.restarts), health.get(p.name, "UNKNOWN")]
        for p in state.processes
    ]
    return _table(["NAME", "ROLE", "PID", "RESTARTS", "HEALTH"], rows)


def endpoint_table(state: MeshState) -> str:
    rows = [["edge gRPC", state.edge_grpc], ["edge admin", state.edge_admin]]
    for p in state.processes:
        for key, value in sorted(p.endpoints.items()):
            if (p.name == "edge" and key in ("grpc", "admin")) or p.role == "traces":
                continue  # listed once, first or last
            rows.append([f"{p.name} {key}", str(value)])
    rows.append(["trace receiver (OTLP)", state.trace_receiver])
    if state.trace_query:
        rows.append(["trace query", state.trace_query])
    return _table(["ENDPOINT", "ADDRESS"], rows)
