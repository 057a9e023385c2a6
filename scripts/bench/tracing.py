"""Tracing overhead through the real mesh: CPU per Chat with traces at 100% vs off.

Runs ``switchboard up --detach`` twice on free loopback ports (the real apps, their
Envoy sidecars and the edge), sends the same bounded load of Chats through the edge,
and sums the CPU time (user + system, from /proc) that the apps and every Envoy spent
during the load and the export tail after it, less their idle rate (active health
checks, stats; measured before the load) over that whole window. "on": built-in trace
receiver, every app and Envoy exporting, sample ratio 1.0. "off": no exporter, no Envoy
tracing, sample ratio 0. The receiver's own CPU is the collector's cost and is not
counted. Target: ratio <= 1.15. ``cpu_ratio_idle_during_load_counted`` is the ratio as
measured before (idle subtracted over the tail only), for comparison.

    python -m scripts.bench tracing            (SWITCHBOARD_BENCH_TRACING_CHATS=300)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

from scripts.bench._proc import cpu_seconds, free_port
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
CHATS = int(os.environ.get("SWITCHBOARD_BENCH_TRACING_CHATS", "300"))
CONCURRENCY = 4
WARMUP = 20
TAIL_S = 6.0  # > the 1 s export interval of the Python batch processor and Envoy
CHAT = "/switchboard.orchestration.v1.OrchestrationService/Chat"
MESSAGES = ("how do I reset my password?", "set an alarm for 7am", "what's the weather like")


def _env(tmp: Path, tracing: bool) -> dict[str, str]:
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    for spec in raw["services"].values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = free_port()
        if "egress_ports" in spec:
            spec["egress_ports"] = {callee: free_port() for callee in spec["egress_ports"]}
    (tmp / "topology.yaml").write_text(yaml.safe_dump(raw))
    return {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(tmp / "topology.yaml"),
        "SWITCHBOARD_MESH_EDGE_PORT": str(free_port()),
        "SWITCHBOARD_MESH_EDGE_ADMIN_PORT": str(free_port()),
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "true" if tracing else "false",
        "SWITCHBOARD_OBS_OTLP_ENDPOINT": "",
        "SWITCHBOARD_OBS_RECEIVER_PORT": str(free_port()),
        "SWITCHBOARD_OBS_RECEIVER_QUERY_PORT": str(free_port()),
        "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO": "1.0" if tracing else "0.0",
        "SWITCHBOARD_OBS_RECEIVER_MAX_TRACES": "100000",
        "PYTHONPATH": str(ROOT),
    }


def _chat(stub: pb_grpc.OrchestrationServiceStub, i: int) -> None:
    stub.Chat(pb.ChatRequest(message=MESSAGES[i % 3], session_id=f"bench-{i % 16}"), timeout=30)


def _measure(tracing: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sb-bench-tracing-") as name:
        tmp = Path(name)
        env = _env(tmp, tracing)
        cli = [sys.executable, "-m", "switchboard_client.cli"]
        state_file = tmp / "data" / "mesh" / "state.json"
        try:
            up = subprocess.run(
                [*cli, "up", "--detach"], env=env, cwd=ROOT, capture_output=True, text=True
            )
            if up.returncode != 0:
                raise RuntimeError(f"switchboard up failed: {up.stdout}{up.stderr}")
            state = json.loads(state_file.read_text())
            processes = [p for p in state["processes"] if p["role"] != "traces"]
            pids = [p["pid"] for p in processes]
            envoys = [p["pid"] for p in processes if p["role"] in ("edge", "sidecar")]
            edge = f"127.0.0.1:{env['SWITCHBOARD_MESH_EDGE_PORT']}"
            with grpc.insecure_channel(edge) as channel:
                stub = pb_grpc.OrchestrationServiceStub(channel)
                for i in range(WARMUP):
                    _chat(stub, i)
                idle0, envoy0 = cpu_seconds(*pids), cpu_seconds(*envoys)
                time.sleep(TAIL_S)  # idle CPU (health checks, stats) is not the load's
                idle_rate = (cpu_seconds(*pids) - idle0) / TAIL_S
                envoy_idle_rate = (cpu_seconds(*envoys) - envoy0) / TAIL_S
                cpu0, wall0 = cpu_seconds(*pids), time.perf_counter()
                envoy_cpu0 = cpu_seconds(*envoys)
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    list(pool.map(lambda i: _chat(stub, i), range(CHATS)))
                wall = time.perf_counter() - wall0
                time.sleep(TAIL_S)  # let batch processors export what the load produced
                # the idle work (health probes: traced too when tracing is on) goes on
                # during the load as well: it is not the Chats' either
                window = wall + TAIL_S
                cpu = cpu_seconds(*pids) - cpu0 - idle_rate * window
                envoy_cpu = cpu_seconds(*envoys) - envoy_cpu0 - envoy_idle_rate * window
            traces = 0
            if tracing:
                query = f"http://127.0.0.1:{env['SWITCHBOARD_OBS_RECEIVER_QUERY_PORT']}/traces"
                documents = httpx.get(query, params={"limit": 1000}, timeout=10).json()
                traces = sum(
                    any(s["name"] == CHAT and s["kind"] == "SERVER" for s in d["spans"])
                    for d in documents
                )
            return {
                "chat_traces_in_last_1000": traces,
                "chats": CHATS,
                "cpu_s": round(cpu, 3),
                "cpu_ms_per_chat": round(cpu / CHATS * 1000, 3),
                "apps_cpu_ms_per_chat": round((cpu - envoy_cpu) / CHATS * 1000, 3),
                "envoys_cpu_ms_per_chat": round(envoy_cpu / CHATS * 1000, 3),
                "chats_per_s": round(CHATS / wall, 1),
                "idle_cpu_ms_per_s": round(idle_rate * 1000, 1),
                "idle_cpu_s_during_load": round(idle_rate * wall, 3),
            }
        finally:
            subprocess.run([*cli, "down"], env=env, cwd=ROOT, capture_output=True, timeout=120)
            if state_file.exists():
                for proc in json.loads(state_file.read_text())["processes"]:
                    if proc["pid"] and Path(f"/proc/{proc['pid']}").exists():
                        os.killpg(proc["pid"], signal.SIGKILL)


def run() -> dict[str, Any]:
    off = _measure(tracing=False)
    on = _measure(tracing=True)
    return {
        "off": off,
        "on": on,
        "cpu_ratio_on_vs_off": round(on["cpu_s"] / off["cpu_s"], 3),
        "cpu_ratio_idle_during_load_counted": round(
            (on["cpu_s"] + on["idle_cpu_s_during_load"])
            / (off["cpu_s"] + off["idle_cpu_s_during_load"]),
            3,
        ),
        "target_ratio": 1.15,
    }
