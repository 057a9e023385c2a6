"""Context service benchmark: GetContext p50 and AppendMemory throughput (SQLite).

A real context server (``python -m switchboard_server context``, SQLite, log level
warning, tracing as configured by the environment) holds a synthetic knowledge base of
10,000 passages and 1,000 sessions with 30 memory entries each; queries are 3-6 words
drawn from the same Zipf vocabulary. The result cache is off, so every GetContext does
the full retrieval.

What each figure is:

* ``get_context_p50/p95/p99_ms``: latency a gRPC client sees over loopback, one call in
  flight at a time (targets: ``docs/benchmarks.md``).
* ``append_memory_per_s``: entries acknowledged per second with ``append_concurrency``
  calls in flight, one entry per call; every acknowledged entry is committed (WAL,
  ``synchronous=FULL``). The calls come from a load generator in its own
  process (:mod:`scripts.bench._append_load`) at nice 10, so that on a small box the
  server it measures gets the cores first; the figure is the median of ``WINDOWS``
  windows of ``APPENDS`` calls (``..._windows`` lists them all).
  ``append_memory_equal_priority_per_s`` is the same with the generator at the server's
  priority, in windows alternating with those, so both meet the same host.
  ``append_entries_per_s_batch10`` sends 10 per call, from this process.
* ``*_server_cpu_ms``: CPU time of the server process per call (all its threads). Unlike
  latencies it barely moves when other work competes for the cores, so compare changes
  by it. ``rpc_floor_server_cpu_ms`` is the same for GetMemoryStats (one indexed read):
  about what the gRPC framework and interceptors cost per call in this server, one call
  at a time like the GetContext latency run; ``rpc_floor_16_in_flight_server_cpu_ms``
  is the same with 16 in flight, where calls share the server's wake-ups.
* ``*_service_*``: the same queries and appends through the domain service in this
  process on the same database (no gRPC, no proto translation): how much of the time is
  the context service itself. ``*_redis_service_*``: the same on the Redis backend.
* ``server_rss_mb``: the server's resident memory after the runs (the SQLite backend
  holds a mirror of session memory; the knowledge index is memory-mapped).
  ``store_open_s``: opening the SQLite store and the knowledge index on the loaded
  database in this process, i.e. the store's part of a restart.
* ``*_stolen_share``: the share of the CPUs' time the hypervisor gave to other guests
  during those runs (``st`` in vmstat): on a virtual machine, slow spells are usually
  spells of steal.
* ``load_average_1m``: the box's load when the run ended; on a shared 2-core box,
  latencies grow with it, CPU per call much less.

    .venv/bin/python -m scripts.bench context
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from scripts.bench import _append_load as append_load
from scripts.bench._proc import StolenTime, cpu_seconds
from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.config import CoreSettings, Settings
from switchboard_server.context import translate
from switchboard_server.context.cache import ResultCache
from switchboard_server.context.domain import ContextService
from switchboard_server.context.metrics import ContextMetrics
from switchboard_server.context.module import build_index, build_store, memory_caps
from switchboard_server.context.settings import ContextSettings
from switchboard_server.context.values import Document, MemoryType, NewMemory
from switchboard_server.errors import Unavailable
from switchboard_server.observability.logging import configure_logging
from switchboard_server.testing import free_port, probe_channel, wait_serving_async
from switchboard_server.validation import Violations

PASSAGES = 10_000
PASSAGES_PER_DOC = 5
SESSIONS = append_load.SESSIONS
ENTRIES_PER_TYPE = 10
QUERIES = 2_000
APPENDS = 3_000
WINDOWS = 3
CONCURRENCY = 32
BATCH = 10
VOCABULARY = 5_000
SEED = 7


def _words(rng: random.Random, vocab: list[str], n: int) -> str:
    """``n`` words drawn from a Zipf(1) law over the vocabulary, like content words of text."""
    return " ".join(rng.choices(vocab, cum_weights=_cum_weights(len(vocab)), k=n))


@functools.cache
def _cum_weights(size: int) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank + 1) for rank in range(size)))


def _vocab(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(9000)}
    result = sorted(words)[:VOCABULARY]
    rng.shuffle(result)
    return result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    stub: pb_grpc.ContextServiceAsyncStub, rng: random.Random, vocab: list[str]
) -> None:
    docs = PASSAGES // PASSAGES_PER_DOC
    batch: list[pb.Document] = []
    for d in range(docs):
        text = "\n\n".join(_words(rng, vocab, 60) + "." for _ in range(PASSAGES_PER_DOC))
        batch.append(pb.Document(id=f"doc-{d}", title=_words(rng, vocab, 3), text=text))
        if len(batch) == 64 or d == docs - 1:
            await stub.IngestDocuments(pb.IngestDocumentsRequest(documents=batch), timeout=60)
            batch = []
    for s in range(SESSIONS):
        entries = [
            pb.MemoryEntry(type=t, content=_words(rng, vocab, 12))
            for t in (pb.MEMORY_TYPE_WORKING, pb.MEMORY_TYPE_EPISODIC, pb.MEMORY_TYPE_SEMANTIC)
            for _ in range(ENTRIES_PER_TYPE)
        ]
        await stub.AppendMemory(pb.AppendMemoryRequest(session_id=f"s{s}", entries=entries))


async def _latencies(
    stub: pb_grpc.ContextServiceAsyncStub, requests: list[pb.GetContextRequest]
) -> list[float]:
    out = []
    for request in requests:
        started = time.perf_counter()
        await stub.GetContext(request, timeout=10)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _append_windows(port: int, pid: int) -> dict[str, Any]:
    """AppendMemory throughput from a load generator in its own process: ``WINDOWS``
    windows with the generator at nice 10 and as many at equal priority, alternating,
    with the server's CPU per append over all of them."""
    rates: dict[int, list[float]] = {10: [], 0: []}
    cpu, stolen = cpu_seconds(pid), StolenTime()
    for window in range(WINDOWS):
        for nice in (10, 0) if window % 2 == 0 else (0, 10):
            first = (2 * window + (nice == 0)) * (APPENDS + append_load.WARMUP)
            out = subprocess.run(
                [sys.executable, "-m", "scripts.bench._append_load", str(port), str(APPENDS),
                 str(CONCURRENCY), str(first), "--nice", str(nice)],
                capture_output=True, text=True, check=True, timeout=300,
            )  # fmt: skip
            rates[nice].append(float(out.stdout))
    calls = 2 * WINDOWS * (APPENDS + append_load.WARMUP)
    return {
        "append_memory_per_s": round(statistics.median(rates[10])),
        "append_memory_per_s_windows": [round(r) for r in rates[10]],
        "append_memory_equal_priority_per_s": round(statistics.median(rates[0])),
        "append_memory_equal_priority_per_s_windows": [round(r) for r in rates[0]],
        "append_memory_server_cpu_ms": round((cpu_seconds(pid) - cpu) / calls * 1000, 3),
        "append_memory_stolen_share": stolen.share(),
    }


def _start_server(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": data_dir,
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_CONTEXT_STORE": "sqlite",
        "SWITCHBOARD_CONTEXT_CACHE_TTL_S": "0",
        "SWITCHBOARD_CONTEXT_SEED_DEFAULT_KNOWLEDGE": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "switchboard_server", "context"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _service_side(data_dir: Path, requests: list[pb.GetContextRequest]) -> dict[str, float]:
    """The same work through the domain service on the same database (no gRPC)."""
    settings = Settings(
        core=CoreSettings(data_dir=data_dir),
        context=ContextSettings(cache_ttl_s=0, seed_default_knowledge=False),
    )
    store = build_store(settings)
    index = build_index(settings, store)
    opened = time.perf_counter()
    await store.open()
    await index.open()
    open_s = time.perf_counter() - opened
    try:
        service = ContextService(
            store,
            index,
            ResultCache(0, 0),
            ContextMetrics(CollectorRegistry()),
            caps=memory_caps(settings),
            passage_max_chars=settings.context.passage_max_chars,
        )
        queries = [translate.context_query(Violations(), r, settings) for r in requests]
        latencies = []
        cpu = time.process_time()
        for query in queries:
            started = time.perf_counter()
            await service.get_context(query)
            latencies.append((time.perf_counter() - started) * 1000)
        cpu_get = (time.process_time() - cpu) / len(queries)
        pending = list(range(APPENDS))

        async def worker() -> None:
            while pending:
                i = pending.pop()
                entry = NewMemory(MemoryType.WORKING, f"turn {i}")
                await service.append_memory(f"s{i % SESSIONS}", [entry])

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed, cpu_append = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await index.close()
        await store.close()
    return {
        "store_open_s": round(open_s, 2),
        "get_context_service_p50_ms": round(statistics.median(latencies), 3),
        "get_context_service_p95_ms": round(_percentile(latencies, 0.95), 3),
        "get_context_service_cpu_ms": round(cpu_get * 1000, 3),
        "append_memory_service_per_s": round(APPENDS / elapsed),
        "append_memory_service_cpu_ms": round(cpu_append / APPENDS * 1000, 3),
    }


def _start_redis(binary: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _redis_service_side(tmp: Path, requests: list[pb.GetContextRequest]) -> dict[str, float]:
    """The same data and queries on the Redis backend (domain service, no gRPC).

    Needs ``redis-server`` on PATH (started here on a free port, append-only with
    fsync always, stopped by PID); skipped otherwise.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        return {}
    port = free_port()
    proc = _start_redis(binary, port, tmp)
    try:
        settings = Settings(
            core=CoreSettings(data_dir=tmp),
            context=ContextSettings(
                store="redis",
                redis_url=SecretStr(f"redis://127.0.0.1:{port}/0"),
                cache_ttl_s=0,
                seed_default_knowledge=False,
            ),
        )
        store = build_store(settings)
        index = build_index(settings, store)
        for _ in range(100):
            try:
                await store.open()
                break
            except Unavailable:
                await asyncio.sleep(0.05)
        await index.open()
        try:
            service = ContextService(
                store,
                index,
                ResultCache(0, 0),
                ContextMetrics(CollectorRegistry()),
                caps=memory_caps(settings),
                passage_max_chars=settings.context.passage_max_chars,
            )
            rng = random.Random(SEED)
            vocab = _vocab(rng)
            docs = PASSAGES // PASSAGES_PER_DOC
            batch: list[Document] = []
            for d in range(docs):
                text = "\n\n".join(_words(rng, vocab, 60) + "." for _ in range(PASSAGES_PER_DOC))
                batch.append(Document(f"doc-{d}", _words(rng, vocab, 3), text))
                if len(batch) == 64 or d == docs - 1:
                    await service.ingest(batch)
                    batch = []
            for session in range(SESSIONS):
                entries = [
                    NewMemory(t, _words(rng, vocab, 12))
                    for t in MemoryType
                    for _ in range(ENTRIES_PER_TYPE)
                ]
                await service.append_memory(f"s{session}", entries)
            queries = [translate.context_query(Violations(), r, settings) for r in requests]
            latencies = []
            for query in queries[:500]:
                started = time.perf_counter()
                await service.get_context(query)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            await index.close()
            await store.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "get_context_redis_service_p50_ms": round(statistics.median(latencies), 3),
        "get_context_redis_service_p95_ms": round(_percentile(latencies, 0.95), 3),
    }


async def _floor_cpu(
    stub: pb_grpc.ContextServiceAsyncStub,
    requests: list[pb.GetContextRequest],
    pid: int,
    in_flight: int = 1,
) -> float:
    """Server CPU per GetMemoryStats call, ``in_flight`` at a time: the per-RPC cost
    that is not retrieval. One at a time, every call pays the server's wake-ups alone."""
    stats = [pb.GetMemoryStatsRequest(session_id=r.session_id) for r in requests[:1000]]
    for request in stats[:100]:
        await stub.GetMemoryStats(request, timeout=10)
    pending = list(stats)

    async def caller() -> None:
        while pending:
            await stub.GetMemoryStats(pending.pop(), timeout=10)

    cpu = cpu_seconds(pid)
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return (cpu_seconds(pid) - cpu) / len(stats)


def _rss_mb(pid: int) -> int:
    """Resident memory of the process ``pid`` (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


async def _main() -> dict[str, Any]:
    configure_logging("warning", "json")  # like the server: no debug line per append
    rng = random.Random(SEED)
    vocab = _vocab(rng)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = _start_server(tmp, port)
        try:
            async with probe_channel(f"127.0.0.1:{port}") as channel:
                await wait_serving_async(channel, proc, timeout=60)
                stub = pb_grpc.ContextServiceStub(channel)
                started = time.perf_counter()
                await _load(stub, rng, vocab)
                load_s = time.perf_counter() - started
                requests = [
                    pb.GetContextRequest(
                        query=_words(rng, vocab, rng.randint(3, 6)),
                        session_id=f"s{rng.randrange(SESSIONS)}",
                        include_knowledge_base=True,
                        max_results=8,
                    )
                    for _ in range(QUERIES)
                ]
                await _latencies(stub, requests[:100])  # warm up
                cpu_floor = await _floor_cpu(stub, requests, proc.pid)
                cpu_floor_16 = await _floor_cpu(stub, requests, proc.pid, in_flight=16)
                cpu, stolen = cpu_seconds(proc.pid), StolenTime()
                miss = await _latencies(stub, requests)
                cpu_get = (cpu_seconds(proc.pid) - cpu) / len(requests)
                stolen_get = stolen.share()
                appends = _append_windows(port, proc.pid)
                batched_rate = await append_load.append_rate(
                    stub, APPENDS, CONCURRENCY, first=10**7, batch=BATCH
                )
                rss_mb = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        service_side = await _service_side(Path(tmp), requests)
        redis_side = await _redis_service_side(Path(tmp), requests)
    return {
        "passages": PASSAGES,
        "sessions": SESSIONS,
        "memory_entries": SESSIONS * ENTRIES_PER_TYPE * 3,
        "load_seconds": round(load_s, 1),
        "get_context_p50_ms": round(statistics.median(miss), 3),
        "get_context_p95_ms": round(_percentile(miss, 0.95), 3),
        "get_context_p99_ms": round(_percentile(miss, 0.99), 3),
        "get_context_server_cpu_ms": round(cpu_get * 1000, 3),
        "get_context_stolen_share": stolen_get,
        "rpc_floor_server_cpu_ms": round(cpu_floor * 1000, 3),
        "rpc_floor_16_in_flight_server_cpu_ms": round(cpu_floor_16 * 1000, 3),
        **appends,
        "append_concurrency": CONCURRENCY,
        "server_rss_mb": rss_mb,
        f"append_entries_per_s_batch{BATCH}": round(batched_rate),
        "store": "sqlite (WAL, synchronous=FULL)",
        "note": "cache off; python -m switchboard_server context, client over loopback gRPC; "
        "GetContext one call in flight, AppendMemory append_concurrency calls in flight",
        **service_side,
        **redis_side,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def run() -> dict[str, Any]:
    return asyncio.run(_main())


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
