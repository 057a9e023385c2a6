"""Context service start-up: spawn to health SERVING on a large knowledge base, with
the platform's floor beside it, versions side by side.

Builds (once, kept under ``KB_START_DIR``) a context data directory per size with the
``kb`` benchmark's corpus, ingested as that benchmark does; then each round runs, in
turn, the floor (``python -c pass``; ``import grpc``; ``import grpc,
opentelemetry.sdk.trace``), and for every size and variant a real ``python -m
switchboard_server context`` on that data, from spawn to SERVING (health polled every
20 ms on a channel that reconnects every 20-100 ms). A variant is ``name=TREE``:
``TREE`` goes first on ``PYTHONPATH`` (``.`` for this checkout, or the ``server``
directory of another version from ``git archive``)::

    git archive main server/switchboard_server | tar -x -C /tmp/kb-base
    KB_START_VARIANTS=before=/tmp/kb-base/server,after=. KB_START_SIZES=100000 \\
        .venv/bin/python -m scripts.bench kb_start

``KB_START_SIZES`` (100000), ``KB_START_ROUNDS`` (7), ``KB_START_DIR``
(``.switchboard/kb-start``); medians of wall clock (and each over the ``python -c
pass`` one) and of the CPU the process used until then (steadier on a busy machine).
A data directory is kept between runs: delete it when the store's format changes
(every variant opens the same one). ``KB_START_DEFAULT_CHANNEL=1`` also times each
start through a default gRPC channel (whose reconnect backoff, 1 s then x1.6, decides
when it sees SERVING).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from scripts.bench.kb import Corpus, service, service_settings, serving_env, spawn_context
from switchboard_server.context.module import build_index, build_store
from switchboard_server.context.values import Document
from switchboard_server.testing import (
    free_port,
    probe_channel,
    stop_process,
    wait_serving_async,
)

FLOOR = {
    "python -c pass": "pass",
    "import grpc": "import grpc",
    "import grpc, opentelemetry.sdk.trace": "import grpc, opentelemetry.sdk.trace",
}
DONE = "built"  # a data directory is complete once this file exists in it


async def _build(size: int, data_dir: Path) -> None:
    """The ``kb`` corpus of ``size`` passages ingested into a context data directory."""
    settings = service_settings(data_dir)
    store = build_store(settings)
    index = build_index(settings, store)
    await store.open()
    await index.open()
    corpus = Corpus(size)
    sb = service(settings, store, index)
    try:
        for batch in corpus.batches():
            await sb.ingest([Document(f"p{n}", "", corpus.passage(n), {}) for n in batch])
    finally:
        await index.close()
        await store.close()
    (data_dir / DONE).write_text(str(size))


def data_dir(root: Path, size: int) -> Path:
    """The data directory of ``size`` passages under ``root``, built if missing."""
    where = root / str(size)
    if not (where / DONE).exists():
        print(f"building {size} passages in {where}", flush=True)
        asyncio.run(_build(size, where))
    return where


def _floor(code: str) -> tuple[float, float]:
    """Seconds of wall clock and of CPU that ``python -c code`` takes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serving(where: Path, tree: str, probe: bool = True) -> tuple[float, float]:
    """Spawn a context service on ``where`` with ``tree`` first on the path: seconds to
    health SERVING and the CPU seconds it used until then. ``probe``: seen through
    :func:`probe_channel`, polled every 20 ms; else through a default channel polled
    every 100 ms, as ``kb`` measured it before."""
    port = free_port()
    env = serving_env(where, port) | {"PYTHONPATH": os.pathsep.join([tree, "."])}
    started = time.perf_counter()
    proc = spawn_context(env)
    try:
        # reconnecting every 20-100 ms: what is timed is the server, not gRPC's backoff
        target = f"127.0.0.1:{port}"
        channel = probe_channel(target) if probe else grpc.aio.insecure_channel(target)
        async with channel:
            await wait_serving_async(channel, proc, timeout=120, interval=0.02 if probe else 0.1)
            return time.perf_counter() - started, _cpu_s(proc.pid)
    finally:
        stop_process(proc)


def _variants() -> list[tuple[str, str]]:
    spec = os.environ.get("KB_START_VARIANTS", "current=.")
    return [(name, tree) for name, _, tree in (i.partition("=") for i in spec.split(","))]


def run() -> dict[str, Any]:
    sizes = [int(s) for s in os.environ.get("KB_START_SIZES", "100000").split(",")]
    rounds = int(os.environ.get("KB_START_ROUNDS", "7"))
    root = Path(os.environ.get("KB_START_DIR", ".switchboard/kb-start")).resolve()
    dirs = {size: data_dir(root, size) for size in sizes}
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for name, code in FLOOR.items():
            runs.setdefault(name, []).append(_floor(code))
        for size, where in dirs.items():
            for variant, tree in _variants():
                key = f"{variant} context SERVING at {size}"
                runs.setdefault(key, []).append(asyncio.run(_serving(where, tree)))
                if os.environ.get("KB_START_DEFAULT_CHANNEL"):
                    key += ", default channel"
                    runs.setdefault(key, []).append(asyncio.run(_serving(where, tree, False)))
        print({k: round(v[-1][0], 3) for k, v in runs.items()}, flush=True)
    base = statistics.median(wall for wall, _ in runs["python -c pass"])
    results: dict[str, Any] = {"rounds": rounds}
    for key, measured in runs.items():
        median = statistics.median(wall for wall, _ in measured)
        results[key] = {
            "median_s": round(median, 3),
            "vs_python": round(median / base, 1),
            "cpu_s": round(statistics.median(cpu for _, cpu in measured), 3),
            "runs": [round(wall, 3) for wall, _ in measured],
        }
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    return results
