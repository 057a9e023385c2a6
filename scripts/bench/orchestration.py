"""Chat-turn latency: all three services in-process, direct calls (no Envoy), open loop.

A turn is started every 1/RATE seconds whatever the previous turns are doing (open
loop, so a slow turn cannot hide later ones); latency is measured from each turn's
scheduled start. ``python -m scripts.bench orchestration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.app import AppServer, create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
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


async def start_all(data_dir: Path) -> tuple[list[AppServer], int]:
    settings = Settings(core=CoreSettings(data_dir=data_dir, grace_period_s=0.0))
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


async def measure(rate: float = RATE_PER_S, duration_s: float = DURATION_S) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        servers, port = await start_all(Path(tmp))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.OrchestrationServiceStub(channel)
        latencies: list[float] = []
        server_ms: list[float] = []
        stages: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        degraded = 0

        async def turn(i: int, scheduled: float, record: bool) -> None:
            nonlocal degraded
            request = pb.ChatRequest(
                message=MESSAGES[i % len(MESSAGES)], session_id=f"bench-{i % SESSIONS}"
            )
            try:
                response = await stub.Chat(request, timeout=5.0)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                return
            if not record:
                return
            latencies.append((time.perf_counter() - scheduled) * 1000.0)
            server_ms.append(response.total_ms)
            degraded += bool(response.degraded)
            for t in response.timings:
                stages.setdefault(pb.Stage.Name(t.stage), []).append(t.duration_ms)

        try:
            for i in range(WARMUP_TURNS):
                await turn(i, time.perf_counter(), record=False)
            tasks = []
            start = time.perf_counter()
            total = int(rate * duration_s)
            for i in range(total):
                scheduled = start + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(turn(i, scheduled, record=True)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
        finally:
            await channel.close(None)
            for server in reversed(servers):
                with contextlib.suppress(Exception):
                    await server.stop(0)
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
        "stage_p50_ms": {k: round(statistics.median(v), 2) for k, v in sorted(stages.items())},
    }


def run() -> dict[str, Any]:
    configure_logging("warning", "json")  # an access line per RPC is not what we measure
    return asyncio.run(measure())


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
