"""Tracing overhead through the real mesh: CPU per Chat with traces at 100% vs off.

Two meshes run side by side for the whole measurement (``switchboard up --detach`` on
free loopback ports: the real apps, their Envoy sidecars and the edge). "off" is tracing
off as shipped: no exporter, so no tracer, no OpenTelemetry interceptors and no Envoy
tracer. "on": the built-in trace receiver, every app and Envoy exporting, sample ratio
1.0. The receiver's own CPU is the collector's cost and is not counted.

Both get the same open-loop load, RATE Chats/s through their edge, in alternating
windows of WINDOW Chats (off, on, off, on, ...), so a slow spell of this shared VM
falls on both rather than on whichever ran second. A closed loop would not compare
like with like: the slower configuration would run fewer Chats per second and pay
more per Chat for the wake-ups it no longer shares between requests.

A mesh's CPU (user + system of the apps and every Envoy, from /proc) over the whole
measurement, less its idle rate (health probes, stats; measured with both meshes up
before the load, once the warm-up's spans are exported) times the same span, is what
its Chats cost, export included (the measurement ends EXPORT_TAIL_S after the last
window, > the 1 s export interval of the Python batch processor and of Envoy).
Target: ratio <= 1.15. The same ratio for each pair of windows after the first
(``cpu_ratio_by_window_pair``, with its standard error) shows how much it moves within
the run. The receiver's CPU over the same span, less its idle rate likewise, is
reported on its own (``receiver_cpu_ms_per_chat``).

    python -m scripts.bench tracing   (SWITCHBOARD_BENCH_TRACING_CHATS=600, _RATE=40)
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
    PortPool,
    cpu_seconds,
    mesh_env,
    mesh_log_excerpt,
    open_loop,
)
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc

CHATS = int(os.environ.get("SWITCHBOARD_BENCH_TRACING_CHATS", "600"))  # per mesh
RATE = float(os.environ.get("SWITCHBOARD_BENCH_TRACING_RATE", "40"))  # Chats/s
WINDOW = 100  # Chats per load window; the meshes alternate windows
WARMUP = 20
IDLE_S = 6.0
EXPORT_TAIL_S = 4.0
CHAT = "/switchboard.orchestration.v1.OrchestrationService/Chat"
MESSAGES = ("how do I reset my password?", "set an alarm for 7am", "what's the weather like")


def _env(tmp: Path, tracing: bool, ports: PortPool) -> dict[str, str]:
    return {
        **mesh_env(tmp, ports),
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "true" if tracing else "false",
        "SWITCHBOARD_OBS_OTLP_ENDPOINT": "",
        "SWITCHBOARD_OBS_RECEIVER_PORT": str(ports()),
        "SWITCHBOARD_OBS_RECEIVER_QUERY_PORT": str(ports()),
        "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO": "1.0" if tracing else "0.0",
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
def _mesh(tracing: bool, ports: PortPool) -> Iterator[_Mesh]:
    cli = [sys.executable, "-m", "switchboard_client.cli"]
    with tempfile.TemporaryDirectory(prefix="sb-bench-tracing-") as name:
        tmp = Path(name)
        env = _env(tmp, tracing, ports)
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


def _pair_ratios(pairs: list[tuple[float, list[float]]], idle: list[float]) -> list[float]:
    """on/off CPU of each pair of windows after the first, idle taken off: how much the
    ratio moves within a run. A traced mesh exports a window's spans in the next pair,
    so the first pair (no export of an earlier window) is left out."""
    ratios = []
    for seconds, (off_cpu, on_cpu) in pairs[1:]:
        off_busy, on_busy = off_cpu - idle[0] * seconds, on_cpu - idle[1] * seconds
        if off_busy > 0:
            ratios.append(on_busy / off_busy)
    return ratios


def run() -> dict[str, Any]:
    ports = PortPool()
    with _mesh(False, ports) as off, _mesh(True, ports) as on:
        meshes = (off, on)
        for mesh in meshes:
            for i in range(WARMUP):
                mesh.stub.Chat(_request(i), timeout=30)
        time.sleep(EXPORT_TAIL_S)  # the warm-up's spans are exported before the idle window
        before = [mesh.cpu() for mesh in meshes]
        receiver_before = cpu_seconds(*on.receiver)
        time.sleep(IDLE_S)
        receiver_idle = (cpu_seconds(*on.receiver) - receiver_before) / IDLE_S
        idle = [
            ((a - a0) / IDLE_S, (e - e0) / IDLE_S)
            for (a, e), (a0, e0) in zip((m.cpu() for m in meshes), before, strict=True)
        ]
        started = time.perf_counter()
        cpu0 = [mesh.cpu() for mesh in meshes]
        receiver0 = cpu_seconds(*on.receiver)
        pairs = []  # per pair of windows: (seconds, each mesh's CPU seconds)
        for first in range(0, CHATS, WINDOW):
            pair_start, pair_cpu0 = time.perf_counter(), [m.cpu()[0] for m in meshes]
            for mesh in meshes:
                _window(mesh, first, min(WINDOW, CHATS - first))
            pairs.append(
                (
                    time.perf_counter() - pair_start,
                    [m.cpu()[0] - c0 for m, c0 in zip(meshes, pair_cpu0, strict=True)],
                )
            )
        time.sleep(EXPORT_TAIL_S)  # the batch processors export what the load produced
        span = time.perf_counter() - started
        figures = {}
        for name, mesh, (a0, e0), (idle_all, idle_envoy) in zip(
            ("off", "on"), meshes, cpu0, idle, strict=True
        ):
            a, e = mesh.cpu()
            cpu = a - a0 - idle_all * span
            envoy_cpu = e - e0 - idle_envoy * span
            figures[name] = _figures(mesh, cpu, envoy_cpu, idle_all)
        receiver_cpu = cpu_seconds(*on.receiver) - receiver0 - receiver_idle * span
        figures["on"]["receiver_cpu_ms_per_chat"] = round(receiver_cpu / on.chats * 1000, 3)
        figures["on"]["chat_traces_received"] = _chat_traces(on)
    by_pair = _pair_ratios(pairs, [all_idle for all_idle, _ in idle])
    return {
        **figures,
        "rate_chats_per_s": RATE,
        "cpu_ratio_on_vs_off": round(figures["on"]["cpu_s"] / figures["off"]["cpu_s"], 3),
        "cpu_ratio_by_window_pair": [round(r, 3) for r in by_pair],
        "cpu_ratio_by_window_pair_sem": round(statistics.stdev(by_pair) / len(by_pair) ** 0.5, 3)
        if len(by_pair) > 1
        else None,
        "apps_added_cpu_ms_per_chat": round(
            figures["on"]["apps_cpu_ms_per_chat"] - figures["off"]["apps_cpu_ms_per_chat"], 3
        ),
        "envoys_added_cpu_ms_per_chat": round(
            figures["on"]["envoys_cpu_ms_per_chat"] - figures["off"]["envoys_cpu_ms_per_chat"], 3
        ),
        "target_ratio": 1.15,
    }
