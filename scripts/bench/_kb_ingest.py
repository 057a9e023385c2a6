"""Ingest a synthetic corpus through the context service's domain (as ``kb`` does) in
this process and print JSON ``{"ingest_per_s": .., "cpu_s": ..}``.

    python -m scripts.bench._kb_ingest SIZE

``KB_INGEST_IN_FLIGHT`` batches are in flight at a time (``kb.INGEST_IN_FLIGHT``).

The code measured is whichever ``switchboard_server`` is first on ``PYTHONPATH`` (so
that ``kb_ingest`` can put two versions side by side); the corpus is ``kb.Corpus``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from scripts.bench.kb import BATCH, INGEST_IN_FLIGHT, Corpus, service, service_settings
from switchboard_server.context.module import build_index, build_store
from switchboard_server.context.values import Document


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def ingest(documents: list[list[Document]], data_dir: Path) -> tuple[float, float]:
    """Seconds and CPU seconds (every thread) to ingest ``documents``, batch by batch."""
    settings = service_settings(data_dir)
    store = build_store(settings)
    index = build_index(settings, store)
    await store.open()
    await index.open()
    sb = service(settings, store, index)
    batches = iter(documents)

    async def ingester() -> None:
        for batch in batches:
            await sb.ingest(batch)

    cpu, started = _cpu_s(), time.perf_counter()
    in_flight = int(os.environ.get("KB_INGEST_IN_FLIGHT", INGEST_IN_FLIGHT))
    await asyncio.gather(*(ingester() for _ in range(in_flight)))
    elapsed, cpu = time.perf_counter() - started, _cpu_s() - cpu
    await index.close()
    await store.close()
    return elapsed, cpu


def main(size: int) -> None:
    corpus = Corpus(size)
    documents = [
        [Document(f"p{n}", "", corpus.passage(n), {}) for n in batch] for batch in corpus.batches()
    ]
    assert all(len(b) <= BATCH for b in documents)
    with tempfile.TemporaryDirectory(prefix="kb-ingest-") as tmp:
        elapsed, cpu = asyncio.run(ingest(documents, Path(tmp)))
    print(json.dumps({"ingest_per_s": round(size / elapsed), "cpu_s": round(cpu, 2)}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
