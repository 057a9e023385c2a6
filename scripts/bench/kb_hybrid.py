"""BM25 alone vs hybrid (BM25 + MiniLM, RRF k=60) on the labelled help-centre queries.

Ingests tests/data/helpcentre as ``switchboard kb ingest`` does, into a context server
with ``SWITCHBOARD_CONTEXT_HYBRID=off`` and another with ``on`` (both started in this
process, one after the other, same corpus and queries), and reports per query set MRR@10,
recall@1/3/5 and the GetContext latency (p50 / p95 over every query, repeated).

    .venv/bin/python -m scripts.bench.kb_hybrid [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import yaml

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_client.kb import files
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.context.settings import ContextSettings
from switchboard_server.testing import start_services

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
DEPTH = 10


def corpus() -> list[pb.Document]:
    docs = []
    for path in files.walk([DATA / "helpcentre"]):
        loaded = files.load_file(
            path,
            files.source_name(path, DATA),
            max_chars=700,
            max_file_bytes=1 << 20,
            max_doc_bytes=65536,
        )
        docs += [
            pb.Document(id=s.id, title=s.title, text=s.text, metadata={"source": s.source})
            for s in loaded.sections
        ]
    return docs


def metrics(ranked: list[list[str]], expected: list[str]) -> dict[str, float]:
    rr = [1 / (r.index(e) + 1) if e in r else 0.0 for r, e in zip(ranked, expected, strict=True)]
    out = {"mrr@10": statistics.fmean(rr)}
    for k in (1, 3, 5):
        out[f"recall@{k}"] = statistics.fmean(
            e in r[:k] for r, e in zip(ranked, expected, strict=True)
        )
    return out


async def measure(
    mode: Literal["off", "on"], cases: list[dict[str, str]], repeat: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            core=CoreSettings(data_dir=Path(tmp), grace_period_s=0.0),
            context=ContextSettings(
                hybrid=mode,
                hybrid_budget_ms=10_000,  # measure the ranking, not this machine's load
                seed_default_knowledge=False,
                cache_ttl_s=0,
            ),
        )
        async with start_services(Path(tmp), [ServiceName.CONTEXT], settings=settings) as svc:
            stub = pb_grpc.ContextServiceStub(svc.channel(ServiceName.CONTEXT))
            docs = corpus()
            await stub.IngestDocuments(
                pb.IngestDocumentsRequest(documents=docs, request_id=str(uuid.uuid4()))
            )
            ranked: list[list[str]] = []
            latencies: list[float] = []
            for round_ in range(repeat):
                for case in cases:
                    started = time.perf_counter()
                    reply = await stub.GetContext(
                        pb.GetContextRequest(
                            query=case["query"],
                            include_knowledge_base=True,
                            max_results=DEPTH,
                            max_context_chars=65536,
                        )
                    )
                    latencies.append((time.perf_counter() - started) * 1000)
                    if round_ == 0:
                        ranked.append([s.document_id for s in reply.sources])
    result: dict[str, Any] = {"mode": mode, "passages": len(docs)}
    for kind in ("lexical", "paraphrase", "all"):
        chosen = [i for i, c in enumerate(cases) if kind in ("all", c["kind"])]
        result[kind] = metrics([ranked[i] for i in chosen], [cases[i]["expect"] for i in chosen])
        result[kind]["queries"] = len(chosen)
    latencies.sort()
    result["get_context_ms"] = {
        "p50": round(latencies[len(latencies) // 2], 2),
        "p95": round(latencies[int(len(latencies) * 0.95)], 2),
    }
    return result


def run(repeat: int = 20) -> dict[str, Any]:
    """``make bench``'s entry: both modes, one after the other, same corpus and queries."""
    cases = yaml.safe_load((DATA / "helpcentre_queries.yaml").read_text())
    return {
        "bm25": asyncio.run(measure("off", cases, repeat)),
        "hybrid": asyncio.run(measure("on", cases, repeat)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="Rounds of the query set (20).")
    results = run(parser.parse_args().repeat)
    print(json.dumps(results, indent=2))
    off, on = results["bm25"], results["hybrid"]
    for kind in ("lexical", "paraphrase", "all"):
        print(
            f"{kind:<10} MRR@10 BM25 {off[kind]['mrr@10']:.3f} -> hybrid {on[kind]['mrr@10']:.3f}"
            f"  recall@1 {off[kind]['recall@1']:.3f} -> {on[kind]['recall@1']:.3f}"
            f"  recall@3 {off[kind]['recall@3']:.3f} -> {on[kind]['recall@3']:.3f}"
        )
    print(f"GetContext p50 {off['get_context_ms']['p50']} ms -> {on['get_context_ms']['p50']} ms")


if __name__ == "__main__":
    main()
