"""Knowledge-base benchmark: Switchboard vs tantivy directly vs SQLite FTS5, one run.

Synthetic Zipf corpora (seeded): a 5,000-word vocabulary (random letter strings that
Switchboard's analyzers keep as they are: no stop word, nothing Snowball stems),
passages of 60-120 words drawn with P(rank r) ~ 1/r, queries of 3-6 distinct words
from the same law, and the 1-word worst case (the most common word). Every system gets
the same passages and queries:

* **switchboard**: the context service's domain in this process (SQLite store and
  tantivy index, as the service builds them): ingest through ``ContextService.ingest``
  in batches of ``BATCH`` one-passage documents, two batches in flight (one SQLite
  transaction and one index commit per batch, analysed by tantivy); queries through
  ``get_context`` (knowledge only, result cache off: ranking on the index's thread plus
  the rows of the 8 passages) and through the index alone on the calling thread;
  ``serving_s`` is a real ``python -m switchboard_server context`` on that data, from
  spawn to SERVING (Python start-up included), and ``rss_mb`` its RSS after a query.
* **tantivy**: the same words (whitespace tokenizer) in a tantivy index used directly (one
  commit per batch, the same writer heap), an OR of term queries, top 8 by BM25.
* **fts5**: SQLite FTS5 (``unicode61``), ``MATCH 'a OR b ..' ORDER BY bm25()``.

``open_s`` and ``rss_mb`` of tantivy and FTS5 come from a child process that opens the
index and answers one query (``_kb_open``). Recall is of the top 8 against an
exhaustive numpy scorer of each system's own formula over every passage
(``bm25.exhaustive_top``: tantivy's with its fieldnorm quantization, FTS5's with
exact lengths), counting a passage whose exact score ties the 8th as found.

    .venv/bin/python -m scripts.bench kb                       # 10k (KB_SIZES to change)
    KB_SIZES=10000,100000,1000000 .venv/bin/python -m scripts.bench kb
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tantivy
from prometheus_client import CollectorRegistry

from switchboard_server.config import CoreSettings, Settings
from switchboard_server.context import analyzer, bm25, text
from switchboard_server.context.cache import ResultCache
from switchboard_server.context.domain import ContextService
from switchboard_server.context.metrics import ContextMetrics
from switchboard_server.context.module import build_index, build_store, index_dir, memory_caps
from switchboard_server.context.settings import ContextSettings
from switchboard_server.context.values import ALL_MEMORY_TYPES, ContextQuery, Document
from switchboard_server.testing import (
    free_port,
    probe_channel,
    stop_process,
    wait_serving_async,
)

VOCABULARY = 5_000
BATCH = 5_000
QUERIES = 200
FTS5_QUERIES_AT_1M = 30
WORST_REPEATS = 20
SEED = 25
HEAP_MB = 64
INGEST_IN_FLIGHT = 2  # Switchboard: one batch is analysed while another commits
Ints = npt.NDArray[np.int64]


def _stemmer() -> tantivy.TextAnalyzer:
    """Lowercase and Snowball English, as ``context.analyzer`` ends (built here so that
    the corpus is the same whichever ``switchboard_server`` is measured)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


class Corpus:
    """Passages as word ids (``flat`` cut at ``offsets``), the vocabulary and queries."""

    def __init__(self, size: int, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words: dict[str, None] = {}
        stemmer = _stemmer()
        while len(words) < VOCABULARY:
            w = "".join(rng.choice(letters, rng.integers(4, 10)))
            # kept as is by the knowledge analyzer (Snowball) and by ``text.terms``
            # (stop words): every system sees w, whatever version is measured
            if text.terms(w) == [w] and stemmer.analyze(w) == [w]:
                words[w] = None
        self.vocab = np.array(list(words), dtype=object)
        p = 1.0 / np.arange(1, VOCABULARY + 1)
        self.p = p / p.sum()
        lengths = rng.integers(60, 121, size)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.flat = rng.choice(VOCABULARY, int(self.offsets[-1]), p=self.p).astype(np.int32)
        self.lengths = lengths.astype(np.int64)
        self.queries = [
            list(dict.fromkeys(rng.choice(VOCABULARY, int(rng.integers(3, 7)), p=self.p)))
            for _ in range(QUERIES)
        ]
        self._postings: dict[int, tuple[Ints, Ints]] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def passage(self, n: int) -> str:
        return " ".join(self.vocab[self.flat[self.offsets[n] : self.offsets[n + 1]]])

    def batches(self) -> Iterator[range]:
        for start in range(0, len(self), BATCH):
            yield range(start, min(start + BATCH, len(self)))

    def words(self, query: list[int]) -> list[str]:
        return [str(self.vocab[t]) for t in query]

    def postings(self, term: int) -> tuple[Ints, Ints]:
        """The passages holding ``term`` and its frequency in each (cached)."""
        if term not in self._postings:
            at = np.flatnonzero(self.flat == term)
            passages = np.searchsorted(self.offsets, at, side="right") - 1
            found, tf = np.unique(passages, return_counts=True)
            self._postings[term] = (found.astype(np.int64), tf.astype(np.int64))
        return self._postings[term]

    def exact(self, query: list[int], quantize: bool, idf: bm25.Idf) -> list[tuple[int, float]]:
        postings = [self.postings(t) for t in query]
        return bm25.exhaustive_top(
            range(len(query)), postings, self.lengths, 8, quantize=quantize, idf=idf
        )


def _timed(calls: list[Callable[[], Any]]) -> tuple[list[float], list[Any]]:
    latencies, out = [], []
    for call in calls:
        started = time.perf_counter()
        out.append(call())
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _du_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return round(total / 1e6, 1)


def _child_open(system: str, path: Path, query: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench._kb_open", system, str(path), *query],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


# -- SQLite FTS5 ----------------------------------------------------------------------


def _fts5(corpus: Corpus, tmp: Path) -> dict[str, Any]:
    path = tmp / "fts5.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5 (body, tokenize = 'unicode61')")
    started = time.perf_counter()
    for batch in corpus.batches():
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO t (rowid, body) VALUES (?, ?)", ((n, corpus.passage(n)) for n in batch)
        )
        conn.execute("COMMIT")
    ingest = len(corpus) / (time.perf_counter() - started)
    conn.close()
    figures: dict[str, Any] = {"ingest_per_s": round(ingest), "disk_mb": _du_mb(path)}
    figures |= _child_open("fts5", path, corpus.words(corpus.queries[0]))
    conn = sqlite3.connect(path)
    sql = "SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 8"
    count = QUERIES if len(corpus) < 1_000_000 else FTS5_QUERIES_AT_1M
    queries = corpus.queries[:count]

    def ask(words: list[str]) -> Callable[[], list[int]]:
        return lambda: [r[0] for r in conn.execute(sql, (" OR ".join(words),))]

    latencies, found = _timed([ask(corpus.words(q)) for q in queries])
    worst, _ = _timed([ask(corpus.words([0]))] * max(3, WORST_REPEATS // 4))
    conn.close()
    exact = [corpus.exact(q, quantize=False, idf=bm25.fts5_idf) for q in queries]
    return figures | {
        "queries": count,
        "query_p50_ms": _p(latencies, 0.5),
        "query_p99_ms": _p(latencies, 0.99),
        "common_word_p50_ms": _p(worst, 0.5),
        "recall_at_8": _recall_scores(found, exact, corpus, False, bm25.fts5_idf),
    }


def _recall_scores(
    found: list[list[int]],
    exact: list[list[tuple[int, float]]],
    corpus: Corpus,
    quantize: bool,
    idf: bm25.Idf,
) -> float:
    """Recall of the exact top 8, where a found passage whose exact score is at least
    the 8th's (a tie) counts too."""
    shares = []
    for got, top, query in zip(found, exact, corpus.queries, strict=False):
        if not top:
            continue
        kth = top[-1][1]
        every = dict(
            bm25.exhaustive_top(
                range(len(query)),
                [corpus.postings(t) for t in query],
                corpus.lengths,
                len(corpus),
                quantize=quantize,
                idf=idf,
            )
        ) if any(p not in dict(top) for p in got) else dict(top)  # fmt: skip
        hits = sum(1 for p in got if every.get(p, 0.0) >= kth * (1 - 1e-6))
        shares.append(min(hits, len(top)) / len(top))
    return round(sum(shares) / len(shares), 4) if shares else 1.0


# -- tantivy directly -----------------------------------------------------------------


def _tantivy_ingest(corpus: Corpus, path: Path, tokenizer: str) -> float:
    """Passages per second into a new tantivy index at ``path``, the body analysed by
    ``tokenizer`` (one commit per batch, as the service does)."""
    path.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", tokenizer_name=tokenizer, index_option="freq")
    builder.add_unsigned_field("n", stored=True)
    index = tantivy.Index(builder.build(), path=str(path))
    if tokenizer == analyzer.NAME:
        index.register_tokenizer(analyzer.NAME, analyzer.build())
    writer = index.writer(HEAP_MB * 1_000_000, 1)
    started = time.perf_counter()
    for batch in corpus.batches():
        for n in batch:
            writer.add_document(tantivy.Document(body=corpus.passage(n), n=n))
        writer.commit()
    rate = len(corpus) / (time.perf_counter() - started)
    writer.wait_merging_threads()
    return rate


def _tantivy(corpus: Corpus, tmp: Path) -> dict[str, Any]:
    path = tmp / "tantivy"
    ingest = _tantivy_ingest(corpus, path, "whitespace")
    figures: dict[str, Any] = {"ingest_per_s": round(ingest), "disk_mb": _du_mb(path)}
    # The engine's ingest floor with Switchboard's work on the text: the same batches,
    # analysed by the knowledge base's analyzer (Snowball included); no document store,
    # nothing durable but tantivy's own commit.
    analysed = _tantivy_ingest(corpus, tmp / "tantivy-analysed", analyzer.NAME)
    figures["ingest_analyzed_per_s"] = round(analysed)
    figures |= _child_open("tantivy", path, corpus.words(corpus.queries[0]))
    ask = _direct(path)
    found = [ask(corpus.words(q)) for q in corpus.queries]
    exact = [corpus.exact(q, quantize=True, idf=bm25.smooth_idf) for q in corpus.queries]
    # its latencies are measured later, alternating with Switchboard's (_switchboard)
    return figures | {"recall_at_8": _recall_scores(found, exact, corpus, True, bm25.smooth_idf)}


def _direct(path: Path) -> Callable[[list[str]], list[int]]:
    """A query function on the tantivy index at ``path``, used directly."""
    index = tantivy.Index.open(str(path))
    schema = index.schema
    searcher = index.searcher()

    def ask(words: list[str]) -> list[int]:
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", w, "freq"))
                for w in words
            ]
        )
        hits = searcher.search(query, 8, count=False).hits
        return [int(searcher.doc(address)["n"][0]) for _, address in hits]

    return ask


# -- Switchboard ----------------------------------------------------------------------


def service_settings(data_dir: Path) -> Settings:
    """The context service as the benchmarks run it: no cache, no seeding, one passage
    per document, the engine's writer heap."""
    return Settings(
        core=CoreSettings(data_dir=data_dir),
        context=ContextSettings(
            cache_ttl_s=0,
            seed_default_knowledge=False,
            passage_max_chars=4000,
            index_heap_mb=HEAP_MB,
        ),
    )


def service(settings: Settings, store: Any, index: Any) -> ContextService:
    """The context service's domain over an opened store and index."""
    return ContextService(
        store,
        index,
        ResultCache(0, 0),
        ContextMetrics(CollectorRegistry()),
        caps=memory_caps(settings),
        passage_max_chars=settings.context.passage_max_chars,
    )


async def _switchboard(corpus: Corpus, tmp: Path) -> dict[str, Any]:
    settings = service_settings(tmp / "sb")
    store = build_store(settings)
    index = build_index(settings, store)
    await store.open()
    await index.open()
    sb = service(settings, store, index)
    vocabulary = [str(w) for w in corpus.vocab]
    # the exhaustive scorer counts words: the index's analyzer must keep each as it is
    assert index.query_terms(" ".join(vocabulary)) == vocabulary
    batches = iter(list(corpus.batches()))

    async def ingester() -> None:  # INGEST_IN_FLIGHT of these: batches overlap
        for batch in batches:
            await sb.ingest([Document(f"p{n}", "", corpus.passage(n), {}) for n in batch])

    started = time.perf_counter()
    await asyncio.gather(*(ingester() for _ in range(INGEST_IN_FLIGHT)))
    ingest = len(corpus) / (time.perf_counter() - started)
    await index.close()
    await store.close()
    figures: dict[str, Any] = {
        "ingest_per_s": round(ingest),
        "disk_mb": _du_mb(tmp / "sb"),
        "index_disk_mb": _du_mb(index_dir(settings)),
    }
    figures |= await _serving(settings, corpus.words(corpus.queries[0]))

    store = build_store(settings)
    index = build_index(settings, store)
    opened = time.perf_counter()
    await store.open()
    await index.open()
    figures["open_in_process_s"] = round(time.perf_counter() - opened, 3)
    sb = service(settings, store, index)
    try:

        def query(words: list[str]) -> ContextQuery:
            return ContextQuery(" ".join(words), "", ALL_MEMORY_TYPES, 8, True, 100_000)

        direct = _direct(tmp / "tantivy")

        async def measure(queries: list[list[str]]) -> dict[str, list[float]]:
            """Per query, in turn: tantivy directly, Switchboard's index alone (ranking,
            on this thread), and the knowledge path of GetContext: a slow spell of the
            machine falls on all three alike."""
            out: dict[str, list[float]] = {"direct": [], "ranking": [], "full": []}
            for words in queries:
                started = time.perf_counter()
                direct(words)
                out["direct"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                index.search_now(" ".join(words), 8)
                out["ranking"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await sb.get_context(query(words))
                out["full"].append((time.perf_counter() - started) * 1000)
            return out

        words = [corpus.words(q) for q in corpus.queries]
        found = []
        for w in words:
            sources = (await sb.get_context(query(w))).sources
            found.append([int(s.id[1:].partition("#")[0]) for s in sources])
        timed = await measure(words)
        worst = await measure([corpus.words([0])] * WORST_REPEATS)
    finally:
        await index.close()
        await store.close()
    exact = [corpus.exact(q, quantize=True, idf=bm25.smooth_idf) for q in corpus.queries]
    return figures | {
        "query_p50_ms": _p(timed["full"], 0.5),
        "query_p99_ms": _p(timed["full"], 0.99),
        "ranking_p50_ms": _p(timed["ranking"], 0.5),
        "ranking_p99_ms": _p(timed["ranking"], 0.99),
        "common_word_p50_ms": _p(worst["full"], 0.5),
        "common_word_p99_ms": _p(worst["full"], 0.99),
        "common_word_ranking_p50_ms": _p(worst["ranking"], 0.5),
        "recall_at_8": _recall_scores(found, exact, corpus, True, bm25.smooth_idf),
        "tantivy_query_p50_ms": _p(timed["direct"], 0.5),
        "tantivy_query_p99_ms": _p(timed["direct"], 0.99),
        "tantivy_common_word_p50_ms": _p(worst["direct"], 0.5),
        "tantivy_common_word_p99_ms": _p(worst["direct"], 0.99),
    }


async def _serving(settings: Settings, query: list[str]) -> dict[str, float]:
    """A real context service on this data: spawn to SERVING, and its RSS after a query."""
    from switchboard.context.v1 import context_service_pb2 as pb
    from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc

    port = free_port()
    env = serving_env(settings.core.data_dir, port)
    started = time.perf_counter()
    proc = spawn_context(env)
    try:
        # reconnecting every 20-100 ms: what is timed is the server, not gRPC's backoff
        async with probe_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving_async(channel, proc, timeout=120, interval=0.02)
            serving = time.perf_counter() - started
            stub = pb_grpc.ContextServiceStub(channel)
            await stub.GetContext(
                pb.GetContextRequest(query=" ".join(query), include_knowledge_base=True)
            )
            rss = _rss_mb(proc.pid)
    finally:
        stop_process(proc)
    return {"serving_s": round(serving, 3), "rss_mb": rss}


def serving_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of a benchmarked context service on ``data_dir``."""
    return {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_CONTEXT_SEED_DEFAULT_KNOWLEDGE": "false",
        "SWITCHBOARD_CONTEXT_PASSAGE_MAX_CHARS": "4000",
        # the lexical engine is what is compared (hybrid would encode every passage)
        "SWITCHBOARD_CONTEXT_HYBRID": "off",
    }


def spawn_context(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m switchboard_server context`` in ``env``, its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "switchboard_server", "context"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run() -> dict[str, Any]:
    sizes = [int(s) for s in os.environ.get("KB_SIZES", "10000").split(",")]
    results: dict[str, Any] = {}
    for size in sizes:
        corpus = Corpus(size)
        with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
            fts5 = _fts5(corpus, Path(tmp))
            direct = _tantivy(corpus, Path(tmp))
            ours = asyncio.run(_switchboard(corpus, Path(tmp)))
        for key in [k for k in ours if k.startswith("tantivy_")]:
            direct[key.removeprefix("tantivy_")] = ours.pop(key)
        for mine in ("ranking", "query"):
            for q in ("p50", "p99"):
                ratio = ours[f"{mine}_{q}_ms"] / max(direct[f"query_{q}_ms"], 1e-9)
                ours[f"{mine}_vs_tantivy_{q}"] = round(ratio, 3)
        floor = ours["ingest_per_s"] / max(direct["ingest_analyzed_per_s"], 1)
        ours["ingest_vs_tantivy_analyzed"] = round(floor, 3)
        results[str(size)] = {"switchboard": ours, "tantivy": direct, "fts5": fts5}
        print(json.dumps({size: results[str(size)]}, indent=2), flush=True)
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    return results
