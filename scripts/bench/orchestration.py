"""Chat-turn latency: all three services in one process, no Envoy, open loop.

Two ways of putting the services in one process, measured one after the other:

* ``in_process``: the single-process deployment (``SWITCHBOARD_ORCHESTRATION_PEERS=
  in_process``): one server serves all three, the pipeline calls the classification
  and context servicers directly (in-process direct calls);
* ``grpc_loopback``: three servers in the process, orchestration calling the other two
  over gRPC on loopback (as the mesh does, minus Envoy).

The services run in a child process (``python -m scripts.bench.orchestration serve
MODE DIR``); this process is the application calling ``Chat``, so the load
generator's own gRPC work does not compete with the services for their event loop. A
turn is started every 1/RATE seconds whatever the previous turns are doing (open loop,
so a slow turn cannot hide later ones); latency is measured from each turn's scheduled
start. The services' process CPU (user + system, /proc) over the measured turns gives
CPU per turn.

    python -m scripts.bench orchestration
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from scripts.bench._proc import ROOT, cpu_seconds, open_loop
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.app import AppServer, create_server, freeze_startup_heap, run_on_loop
from switchboard_server.config import CoreSettings, ServiceName, Settings, load_settings
from switchboard_server.observability.logging import configure_logging

RATE_PER_S = 50.0
DURATION_S = 10.0
WARMUP_TURNS = 25
SESSIONS = 20
MESSAGES = (
    "wake me up at seven tomorrow",
    "what is switchboard?",
    "play some jazz in the kitchen",
    "what's the weather like in paris today",
    "remind me to buy milk",
    "how does the context service rank memory?",
    "turn off the lights in the bedroom",
    "tell me a joke",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


MODES = ("in_process", "grpc_loopback")


async def start_all(data_dir: Path, mode: str = "grpc_loopback") -> tuple[list[AppServer], int]:
    settings = Settings(core=CoreSettings(data_dir=data_dir, grace_period_s=0.0))
    if mode == "in_process":
        settings = dataclasses.replace(
            settings, orchestration=settings.orchestration.model_copy(update={"peers": mode})
        )
        server, port = await create_server(settings, ServiceName.ORCHESTRATION, "127.0.0.1:0")
        await server.start()
        return [server], port
    servers: list[AppServer] = []
    targets: dict[str, str] = {}
    for service, key in (
        (ServiceName.CLASSIFICATION, "classification_target"),
        (ServiceName.CONTEXT, "context_target"),
    ):
        server, port = await create_server(settings, service, "127.0.0.1:0")
        servers.append(server)
        targets[key] = f"127.0.0.1:{port}"
    settings = dataclasses.replace(
        settings, orchestration=settings.orchestration.model_copy(update=targets)
    )
    server, port = await create_server(settings, ServiceName.ORCHESTRATION, "127.0.0.1:0")
    servers.append(server)
    await asyncio.gather(*(s.start() for s in servers))
    return servers, port


async def serve(mode: str, data_dir: Path) -> None:
    """Child process: the three services; prints the orchestration port, then serves."""
    configure_logging("warning", "json")  # an access line per RPC is not what we measure
    servers, port = await start_all(data_dir, mode)
    freeze_startup_heap()  # as python -m switchboard_server does once ready
    print(port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                await server.stop(0)


def measure(
    mode: str = "in_process", rate: float = RATE_PER_S, duration_s: float = DURATION_S
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench.orchestration", "serve", mode, tmp],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())  # after training/loading: ready
            return _load(port, proc.pid, rate, duration_s)
        finally:
            proc.terminate()
            proc.wait(30)


def _request(i: int) -> pb.ChatRequest:
    return pb.ChatRequest(message=MESSAGES[i % len(MESSAGES)], session_id=f"bench-{i % SESSIONS}")


def _load(port: int, pid: int, rate: float, duration_s: float) -> dict[str, Any]:
    """Open-loop load (``_proc.open_loop``); each turn timed from its scheduled start."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        chat = pb_grpc.OrchestrationServiceStub(channel).Chat
        for i in range(WARMUP_TURNS):
            chat(_request(i), timeout=5.0)
        total = int(rate * duration_s)
        cpu_before = cpu_seconds(pid)
        start = time.perf_counter()
        finished = open_loop(lambda i: chat.future(_request(i), timeout=5.0), total, rate)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(pid) - cpu_before
    return _summary(finished, rate, elapsed, cpu)


def _summary(
    finished: list[tuple[float, grpc.Future[pb.ChatResponse]]],
    rate: float,
    elapsed: float,
    cpu: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    server_ms: list[float] = []
    stages: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    degraded = 0
    for latency, call in finished:
        error = call.exception()
        if error is not None:
            name = error.code().name if isinstance(error, grpc.Call) else type(error).__name__
            errors[name] = errors.get(name, 0) + 1
            continue
        response: pb.ChatResponse = call.result()
        latencies.append(latency)
        server_ms.append(response.total_ms)
        degraded += bool(response.degraded)
        for t in response.timings:
            stages.setdefault(pb.Stage.Name(t.stage), []).append(t.duration_ms)
    return {
        "turns": len(latencies),
        "offered_rate_per_s": rate,
        "achieved_rate_per_s": round(len(latencies) / elapsed, 1),
        "errors": errors,
        "degraded_turns": degraded,
        "p50_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(percentile(latencies, 0.90), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "server_total_p50_ms": round(statistics.median(server_ms), 2),
        "services_cpu_ms_per_turn": round(cpu / max(len(latencies), 1) * 1000, 2),
        "stage_p50_ms": {k: round(statistics.median(v), 2) for k, v in sorted(stages.items())},
    }


def run() -> dict[str, Any]:
    return {mode: measure(mode) for mode in MODES}


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        run_on_loop(serve(sys.argv[2], Path(sys.argv[3])), load_settings().core.event_loop)
    else:
        import json

        print(json.dumps(run(), indent=2))
