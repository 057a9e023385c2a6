"""Tracing overhead through the real mesh: CPU per Chat with tracing off, and on at
10 % and at 100 % sampling, side by side in one run.

Three meshes run side by side for the whole measurement (``switchboard up --detach`` on
free loopback ports: the real apps, their Envoy sidecars and the edge). "off" is tracing
off as shipped: no exporter, so no tracer, no OpenTelemetry interceptors and no Envoy
tracer. "on": the built-in trace receiver, every app and Envoy exporting, new traces
sampled at 10 % (the deployment default) in one mesh and at 100 % (``switchboard up``'s
default) in the other (``SWITCHBOARD_MESH_TRACE_SAMPLE_RATIO``: the edge Envoy decides,
everything behind it follows the caller's sampled flag). The receiver's own CPU is the
collector's cost and is not counted.

All get the same open-loop load, RATE Chats/s through their edge, in rounds of one
window of WINDOW Chats each (off, 10 %, 100 %, off, ...), so a slow spell of this shared
VM falls on all of them rather than on whichever ran last. A closed loop would not
compare like with like: the slower configuration would run fewer Chats per second and
pay more per Chat for the wake-ups it no longer shares between requests.

A mesh's CPU (user + system of the apps and every Envoy, from /proc) over a round, less
its idle rate (health probes, stats; measured with the meshes up before the load, once
the warm-up's spans are exported) times the round's length, is what its Chats cost,
export included. The ratio of each traced mesh's CPU to the off mesh's in the same
round, for every round after the first (a traced mesh exports a window's spans during
the next one), gives ``cpu_ratio_at_10pct`` and ``cpu_ratio_at_100pct``: the medians.
The whole measurement's ratios (``..._whole_run``, ending EXPORT_TAIL_S after the last
round, longer than the 1 s export interval of the apps and Envoy) are reported too, as
is the receiver's CPU per Chat.

    python -m scripts.bench tracing   (SWITCHBOARD_BENCH_TRACING_CHATS=800, _RATE=40)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from scripts.bench._proc import (
    ROOT,
    cpu_seconds,
    mesh_env,
    mesh_log_excerpt,
    open_loop,
)
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.testing import PortPool

CHATS = int(os.environ.get("SWITCHBOARD_BENCH_TRACING_CHATS", "800"))  # per mesh
RATE = float(os.environ.get("SWITCHBOARD_BENCH_TRACING_RATE", "40"))  # Chats/s
WINDOW = 100  # Chats per load window; the meshes take turns, one window each per round
MESHES = {"off": None, "on_10pct": 0.1, "on_100pct": 1.0}  # name: sample ratio
WARMUP = 20
IDLE_S = 6.0
EXPORT_TAIL_S = 4.0
CHAT = "/switchboard.orchestration.v1.OrchestrationService/Chat"
MESSAGES = ("how do I reset my password?", "set an alarm for 7am", "what's the weather like")


def _env(tmp: Path, sample_ratio: float | None, ports: PortPool) -> dict[str, str]:
    """A mesh's environment: tracing off (``sample_ratio`` None) or exporting to its
    own receiver with new traces sampled at ``sample_ratio``."""
    return {
        **mesh_env(tmp, ports),
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "false" if sample_ratio is None else "true",
        "SWITCHBOARD_MESH_TRACE_SAMPLE_RATIO": str(sample_ratio or 0.0),
        "SWITCHBOARD_OBS_OTLP_ENDPOINT": "",
        "SWITCHBOARD_OBS_RECEIVER_PORT": str(ports()),
        "SWITCHBOARD_OBS_RECEIVER_QUERY_PORT": str(ports()),
        "SWITCHBOARD_OBS_RECEIVER_MAX_TRACES": "100000",
        "PYTHONPATH": str(ROOT),
    }


@dataclass
class _Mesh:
    """One running mesh: the processes whose CPU counts, and a Chat stub to its edge."""

    env: dict[str, str]
    pids: list[int]
    envoys: list[int]
    receiver: list[int]  # the built-in trace receiver (not counted in the ratio)
    channel: grpc.Channel
    latencies_ms: list[float] = field(default_factory=list)
    chats: int = 0

    @property
    def stub(self) -> pb_grpc.OrchestrationServiceStub:
        return pb_grpc.OrchestrationServiceStub(self.channel)

    def cpu(self) -> tuple[float, float]:
        """(all processes, Envoys only) CPU seconds so far."""
        return cpu_seconds(*self.pids), cpu_seconds(*self.envoys)


def _request(i: int) -> pb.ChatRequest:
    return pb.ChatRequest(message=MESSAGES[i % 3], session_id=f"bench-{i % 16}")


@contextlib.contextmanager
def _mesh(sample_ratio: float | None, ports: PortPool) -> Iterator[_Mesh]:
    cli = [sys.executable, "-m", "switchboard_client.cli"]
    with tempfile.TemporaryDirectory(prefix="sb-bench-tracing-") as name:
        tmp = Path(name)
        env = _env(tmp, sample_ratio, ports)
        state_file = tmp / "data" / "mesh" / "state.json"
        try:
            up = subprocess.run(
                [*cli, "up", "--detach"], env=env, cwd=ROOT, capture_output=True, text=True
            )
            if up.returncode != 0:
                excerpt = mesh_log_excerpt(tmp / "data")
                raise RuntimeError(f"switchboard up failed: {up.stdout}{up.stderr}\n{excerpt}")
            state = json.loads(state_file.read_text())
            processes = [p for p in state["processes"] if p["role"] != "traces"]
            edge = f"127.0.0.1:{env['SWITCHBOARD_MESH_EDGE_PORT']}"
            with grpc.insecure_channel(edge) as channel:
                yield _Mesh(
                    env=env,
                    pids=[p["pid"] for p in processes],
                    envoys=[p["pid"] for p in processes if p["role"] in ("edge", "sidecar")],
                    receiver=[p["pid"] for p in state["processes"] if p["role"] == "traces"],
                    channel=channel,
                )
        finally:
            subprocess.run([*cli, "down"], env=env, cwd=ROOT, capture_output=True, timeout=120)
            if state_file.exists():
                for proc in json.loads(state_file.read_text())["processes"]:
                    if proc["pid"] and Path(f"/proc/{proc['pid']}").exists():
                        os.killpg(proc["pid"], signal.SIGKILL)


def _window(mesh: _Mesh, first: int, count: int) -> None:
    """``count`` Chats at RATE/s, open loop; latency from each Chat's scheduled start."""
    chat = mesh.stub.Chat
    finished = open_loop(lambda i: chat.future(_request(first + i), timeout=30), count, RATE)
    for latency, call in finished:
        call.result()  # a failed Chat fails the benchmark
        mesh.latencies_ms.append(latency)
    mesh.chats += count


def _chat_traces(mesh: _Mesh) -> int:
    query = f"http://127.0.0.1:{mesh.env['SWITCHBOARD_OBS_RECEIVER_QUERY_PORT']}/traces"
    documents = httpx.get(query, params={"limit": 100_000}, timeout=30).json()
    return sum(
        any(s["name"] == CHAT and s["kind"] == "SERVER" for s in d["spans"]) for d in documents
    )


def _figures(mesh: _Mesh, cpu: float, envoy_cpu: float, idle: float) -> dict[str, Any]:
    ordered = sorted(mesh.latencies_ms)
    return {
        "chats": mesh.chats,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_chat": round(cpu / mesh.chats * 1000, 3),
        "apps_cpu_ms_per_chat": round((cpu - envoy_cpu) / mesh.chats * 1000, 3),
        "envoys_cpu_ms_per_chat": round(envoy_cpu / mesh.chats * 1000, 3),
        "idle_cpu_ms_per_s": round(idle * 1000, 1),
        "chat_p50_ms": round(statistics.median(ordered), 2),
        "chat_p99_ms": round(ordered[int(len(ordered) * 0.99)], 2),
    }


def _round_ratios(
    rounds: list[tuple[float, list[float]]], idle: list[float], traced: int
) -> list[float]:
    """Mesh ``traced``'s CPU over the off mesh's (index 0) in each round after the
    first, idle taken off: a traced mesh exports a window's spans during the next
    round, so the first round (no export of an earlier window) is left out."""
    ratios = []
    for seconds, cpu in rounds[1:]:
        off_busy = cpu[0] - idle[0] * seconds
        on_busy = cpu[traced] - idle[traced] * seconds
        if off_busy > 0:
            ratios.append(on_busy / off_busy)
    return ratios


def run() -> dict[str, Any]:
    ports = PortPool()
    with contextlib.ExitStack() as stack:
        meshes = [stack.enter_context(_mesh(ratio, ports)) for ratio in MESHES.values()]
        traced = meshes[1:]
        for mesh in meshes:
            for i in range(WARMUP):
                mesh.stub.Chat(_request(i), timeout=30)
        time.sleep(EXPORT_TAIL_S)  # the warm-up's spans are exported before the idle window
        before = [mesh.cpu() for mesh in meshes]
        receivers_before = [cpu_seconds(*mesh.receiver) for mesh in traced]
        time.sleep(IDLE_S)
        receivers_idle = [
            (cpu_seconds(*mesh.receiver) - r0) / IDLE_S
            for mesh, r0 in zip(traced, receivers_before, strict=True)
        ]
        idle = [
            ((a - a0) / IDLE_S, (e - e0) / IDLE_S)
            for (a, e), (a0, e0) in zip((m.cpu() for m in meshes), before, strict=True)
        ]
        started = time.perf_counter()
        cpu0 = [mesh.cpu() for mesh in meshes]
        receivers0 = [cpu_seconds(*mesh.receiver) for mesh in traced]
        rounds = []  # per round: (seconds, each mesh's CPU seconds)
        for first in range(0, CHATS, WINDOW):
            round_start, round_cpu0 = time.perf_counter(), [m.cpu()[0] for m in meshes]
            for mesh in meshes:
                _window(mesh, first, min(WINDOW, CHATS - first))
            rounds.append(
                (
                    time.perf_counter() - round_start,
                    [m.cpu()[0] - c0 for m, c0 in zip(meshes, round_cpu0, strict=True)],
                )
            )
        time.sleep(EXPORT_TAIL_S)  # the batch processors export what the load produced
        span = time.perf_counter() - started
        figures = {}
        for name, mesh, (a0, e0), (idle_all, idle_envoy) in zip(
            MESHES, meshes, cpu0, idle, strict=True
        ):
            a, e = mesh.cpu()
            cpu = a - a0 - idle_all * span
            envoy_cpu = e - e0 - idle_envoy * span
            figures[name] = _figures(mesh, cpu, envoy_cpu, idle_all)
        for name, mesh, r0, r_idle in zip(
            list(MESHES)[1:], traced, receivers0, receivers_idle, strict=True
        ):
            receiver_cpu = cpu_seconds(*mesh.receiver) - r0 - r_idle * span
            figures[name]["receiver_cpu_ms_per_chat"] = round(receiver_cpu / mesh.chats * 1000, 3)
            figures[name]["chat_traces_received"] = _chat_traces(mesh)
            figures[name]["chats_including_warmup"] = mesh.chats + WARMUP
    idle_rates = [all_idle for all_idle, _ in idle]
    summary: dict[str, Any] = {"rate_chats_per_s": RATE, "rounds": len(rounds)}
    off = figures["off"]
    for index, (name, label) in enumerate((("on_10pct", "10pct"), ("on_100pct", "100pct")), 1):
        by_round = _round_ratios(rounds, idle_rates, index)
        on = figures[name]
        summary[f"cpu_ratio_at_{label}"] = round(statistics.median(by_round), 3)
        summary[f"cpu_ratio_at_{label}_by_round"] = [round(r, 3) for r in by_round]
        summary[f"cpu_ratio_at_{label}_whole_run"] = round(on["cpu_s"] / off["cpu_s"], 3)
        summary[f"apps_added_cpu_ms_per_chat_at_{label}"] = round(
            on["apps_cpu_ms_per_chat"] - off["apps_cpu_ms_per_chat"], 3
        )
        summary[f"envoys_added_cpu_ms_per_chat_at_{label}"] = round(
            on["envoys_cpu_ms_per_chat"] - off["envoys_cpu_ms_per_chat"], 3
        )
    return {**figures, **summary}
