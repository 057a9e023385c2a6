"""The mesh's cost: the same chat pipeline direct (app to app) and through Envoy, one run.

Direct: the three apps, orchestration calling the other two on their app ports.
Mesh: `python -m switchboard_server.mesh up --detach` (edge + one sidecar per app,
orchestration calling through its sidecar's egress listeners). Both on free loopback
ports with a fresh data dir, tracing export off in both.

For each, an open-loop load of RATE Chat turns/s for SECONDS (after WARMUP_S) on one
channel, from the engine of `switchboard load`; latency is measured from each turn's
scheduled start (no coordinated omission). CPU is utime+stime from /proc/<pid>/stat of
every app and Envoy, before and after. An Envoy "traversal" is one request through one
Envoy listener, counted from the Envoys' own ``http.*.downstream_rq_total`` (health
checks included: ~1/s per cluster; the admin listener, which this script itself
scrapes, is not a traversal).

Envoy's fixed cost is measured in the same run: after the warm-up, IDLE_S with no traffic
(only active health checks and stats housekeeping). The mesh result reports Envoy CPU
per traversal both including that baseline (all Envoy CPU of the load window over all
its traversals) and excluding it (the idle CPU rate and idle traversal rate times the
window subtracted first), so a fixed cost is neither hidden nor mistaken for per-request
cost.

    python -m scripts.bench mesh        # or SWITCHBOARD_BENCH_MESH_SECONDS=20 ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx

from scripts.bench._proc import cpu_seconds, mesh_env, mesh_log_excerpt
from switchboard_client import ConnectConfig
from switchboard_client.loadgen import ChatDriver, LoadPlan, run_load
from switchboard_client.loadgen.plan import MAX_CONCURRENCY
from switchboard_server.mesh.envoy import counters
from switchboard_server.mesh.health import grpc_health
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.testing import PortPool

RATE = float(os.environ.get("SWITCHBOARD_BENCH_MESH_RATE", "100"))
SECONDS = float(os.environ.get("SWITCHBOARD_BENCH_MESH_SECONDS", "10"))
IDLE_S = float(os.environ.get("SWITCHBOARD_BENCH_MESH_IDLE_SECONDS", "5"))
WARMUP_S = 3.0
SETTLE_S = 1.0
SESSIONS = 50
CALL_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 240.0
SERVICES = ("classification", "context", "orchestration")
MESSAGES = tuple(f"what is my account balance? ({i})" for i in range(7))
_DOWNSTREAM = re.compile(r"^http\.(?!admin\.)[^.]+\.downstream_rq_total$")


async def _load(target: str, seconds: float) -> dict[str, Any]:
    """Open loop at RATE turns/s with `switchboard load`'s engine; latencies (of the turns
    answered OK) from each turn's scheduled start."""
    plan = LoadPlan(
        rate=RATE,
        duration_s=seconds,
        concurrency=MAX_CONCURRENCY,
        sessions=SESSIONS,
        timeout_s=CALL_TIMEOUT_S,
        messages=MESSAGES,
        session_prefix="bench",
    )
    async with ChatDriver(ConnectConfig(target, timeout_s=CALL_TIMEOUT_S)) as driver:
        report = await run_load(plan, driver.send)
    latency = report["ok_latency_ms"]
    return {
        "turns": report["scheduled"],
        "ok": report["ok"],
        "errors": {code: n for code, n in report["codes"].items() if code != "OK"},
        "degraded": report["degraded"],
        "achieved_rate": round(report["achieved_rate"], 1),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
    }


async def _measure(target: str, pids: dict[str, list[int]]) -> dict[str, Any]:
    await _load(target, WARMUP_S)
    before = {role: cpu_seconds(*p) for role, p in pids.items()}
    result = await _load(target, SECONDS)
    after = {role: cpu_seconds(*p) for role, p in pids.items()}
    for role in pids:
        result[f"{role}_cpu_ms_per_turn"] = round(
            (after[role] - before[role]) * 1000 / result["turns"], 3
        )
    return result


async def _wait_serving(targets: list[tuple[str, str]]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for target, service in targets:
        while await grpc_health(target, service) != "SERVING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} {service} not serving")
            await asyncio.sleep(0.5)


async def _direct(data_dir: Path) -> dict[str, Any]:
    pool = PortPool()
    ports = {s: pool() for s in SERVICES}
    procs: list[asyncio.subprocess.Process] = []
    try:
        for service in SERVICES:
            env = {
                **os.environ,
                "SWITCHBOARD_PORT": str(ports[service]),
                "SWITCHBOARD_DATA_DIR": str(data_dir),
                "SWITCHBOARD_LOG_LEVEL": "warning",
                "SWITCHBOARD_OBS_OTLP_ENDPOINT": "",
                "SWITCHBOARD_ORCHESTRATION_CLASSIFICATION_TARGET": (
                    f"127.0.0.1:{ports['classification']}"
                ),
                "SWITCHBOARD_ORCHESTRATION_CONTEXT_TARGET": f"127.0.0.1:{ports['context']}",
            }
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "switchboard_server",
                    service,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        await _wait_serving([(f"127.0.0.1:{ports[s]}", "") for s in SERVICES])
        target = f"127.0.0.1:{ports['orchestration']}"
        return await _measure(target, {"app": [p.pid for p in procs]})
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 30)


def _mesh_env(tmp: Path, data_dir: Path) -> dict[str, str]:
    return {
        **mesh_env(tmp, PortPool()),
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_OBS_OTLP_ENDPOINT": "",
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "false",
        "SWITCHBOARD_MESH_STARTUP_TIMEOUT_S": str(STARTUP_TIMEOUT_S),
    }


async def _command(env: dict[str, str], *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def _traversals(admins: list[int]) -> int:
    async with httpx.AsyncClient() as client:
        total = 0
        for port in admins:
            stats = await counters(client, port)
            total += sum(v for k, v in stats.items() if _DOWNSTREAM.match(k))
    return total


async def _window(
    envoys: list[int],
    admins: list[int],
    work: Awaitable[Any],
    pids: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Envoy CPU seconds, traversals and wall seconds while ``work`` runs (and its result)."""
    roles = pids or {}
    cpu_before, roles_before = cpu_seconds(*envoys), {r: cpu_seconds(*p) for r, p in roles.items()}
    hops_before, started = await _traversals(admins), time.monotonic()
    outcome = await work
    cpu_after, roles_after = cpu_seconds(*envoys), {r: cpu_seconds(*p) for r, p in roles.items()}
    wall = time.monotonic() - started
    return {
        "cpu": cpu_after - cpu_before,
        "hops": await _traversals(admins) - hops_before,
        "wall": wall,
        "load": outcome,
        "cpu_by_role": {r: roles_after[r] - roles_before[r] for r in roles},
    }


def _envoy_figures(idle: dict[str, Any], loaded: dict[str, Any], turns: int) -> dict[str, Any]:
    """Per-traversal Envoy CPU with and without the fixed (no-traffic) baseline."""
    idle_cpu_rate = idle["cpu"] / idle["wall"]
    idle_hop_rate = idle["hops"] / idle["wall"]
    request_hops = max(loaded["hops"] - idle_hop_rate * loaded["wall"], 1.0)
    request_cpu = loaded["cpu"] - idle_cpu_rate * loaded["wall"]
    return {
        "envoy_traversals_per_turn": round(loaded["hops"] / turns, 2),
        "envoy_cpu_ms_per_traversal": round(loaded["cpu"] * 1000 / max(loaded["hops"], 1), 4),
        "envoy_idle_cpu_ms_per_s": round(idle_cpu_rate * 1000, 2),
        "envoy_idle_traversals_per_s": round(idle_hop_rate, 2),
        "envoy_cpu_ms_per_traversal_excl_idle": round(request_cpu * 1000 / request_hops, 4),
        "envoy_idle_share_of_cpu": round(idle_cpu_rate * loaded["wall"] / loaded["cpu"], 3),
    }


async def measure_mesh(
    tmp: Path, data_dir: Path, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One `switchboard up --detach` (with ``extra_env``) under the load; its figures."""
    env = {**_mesh_env(tmp, data_dir), **(extra_env or {})}
    mesh = [sys.executable, "-m", "switchboard_server.mesh"]
    pids: dict[str, list[int]] = {"app": [], "envoy": []}
    code, output = await _command(env, *mesh, "up", "--detach")
    try:
        if code != 0:
            raise RuntimeError(f"{output[-2000:]}\n{mesh_log_excerpt(data_dir)}")
        state = json.loads((data_dir / "mesh" / "state.json").read_text())
        admins = []
        pids["runner"] = [state["supervisor_pid"]]  # it pumps every child's log
        for process in state["processes"]:
            role = "app" if process["role"] == "app" else "envoy"
            pids[role].append(process["pid"])
            if "admin" in process["endpoints"]:
                admins.append(int(process["endpoints"]["admin"].rsplit(":", 1)[1]))
        target = state["edge_grpc"]
        await _load(target, WARMUP_S)
        await asyncio.sleep(SETTLE_S)
        idle = await _window(pids["envoy"], admins, asyncio.sleep(IDLE_S))
        loaded = await _window(pids["envoy"], admins, _load(target, SECONDS), pids)
        result: dict[str, Any] = loaded.pop("load")
        for role, cpu in loaded.pop("cpu_by_role").items():
            result[f"{role}_cpu_ms_per_turn"] = round(cpu * 1000 / result["turns"], 3)
        result.update(_envoy_figures(idle, loaded, result["turns"]))
        return result
    finally:
        await _command(env, *mesh, "down")
        for pid in pids["app"] + pids["envoy"]:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


async def _run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-mesh-") as name:
        tmp = Path(name)
        direct = await _direct(tmp / "direct")
        mesh = await measure_mesh(tmp, tmp / "mesh")
    direct_cpu = direct["app_cpu_ms_per_turn"]
    mesh_cpu = (
        mesh["app_cpu_ms_per_turn"] + mesh["envoy_cpu_ms_per_turn"] + mesh["runner_cpu_ms_per_turn"]
    )
    return {
        "rate_turns_per_s": RATE,
        "seconds": SECONDS,
        "cores": os.cpu_count(),
        "direct": direct,
        "mesh": mesh,
        "cpu_ratio_mesh_over_direct": round(mesh_cpu / direct_cpu, 3) if direct_cpu else None,
    }


def run() -> dict[str, Any]:
    return asyncio.run(_run())


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
