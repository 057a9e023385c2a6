"""The SQLite backend ranks from postings cached in memory: what it answers after
ingests, re-ingests and deletes is what a store that never cached anything answers."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from switchboard_server.context.domain import prepare
from switchboard_server.context.model import Document, KnowledgeHit, MemoryType
from switchboard_server.context.store.sqlite import SqliteStore
from switchboard_server.context.store.sqlite_index import Postings, PostingsCache, Totals

CAPS = dict.fromkeys(MemoryType, 10)
WORDS = [f"w{i}" for i in range(40)]
BUDGET = 20  # small: candidates are rescored too
QUERIES = [["w1"], ["w3", "w7"], ["w2", "w5", "w30", "w39"], ["w0", "w1", "w2"], ["new"]]


def documents(ids: range, seed: int) -> list[Document]:
    rng = random.Random(seed)
    return [
        Document(f"doc-{d}", f"title {d}", " ".join(rng.choices(WORDS, k=rng.randint(5, 40))))
        for d in ids
    ]


async def answers(store: SqliteStore) -> list[list[KnowledgeHit]]:
    return [await store.search_knowledge(q, 5) for q in QUERIES]


async def fresh_answers(path: Path) -> list[list[KnowledgeHit]]:
    """What a store opened now on the same file (nothing cached yet) answers."""
    store = SqliteStore(path, CAPS, match_budget=BUDGET)
    await store.open()
    try:
        return await answers(store)
    finally:
        await store.close()


async def test_answers_follow_every_write(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    store = SqliteStore(path, CAPS, match_budget=BUDGET)
    await store.open()
    try:
        await store.ingest([prepare(d, 700) for d in documents(range(60), seed=1)], now=1.0)
        assert await answers(store) == await fresh_answers(path)
        assert not (await answers(store))[-1]  # "new" is in no passage yet

        await store.ingest([prepare(Document("doc-new", "t", "new w1 w1 w3"), 700)], now=2.0)
        found = await answers(store)
        assert found[-1][0].passage_id == "doc-new#0"
        assert found == await fresh_answers(path)

        replaced = documents(range(10, 30), seed=2)  # same ids, other text
        await store.ingest([prepare(d, 700) for d in replaced], now=3.0)
        assert await answers(store) == await fresh_answers(path)

        await store.delete_documents(["doc-new", "doc-3", "doc-4"])
        found = await answers(store)
        assert not found[-1]
        assert all(h.document_id not in {"doc-3", "doc-4"} for hits in found for h in hits)
        assert found == await fresh_answers(path)
    finally:
        await store.close()


def postings(*rowids: int) -> Postings:
    values = np.array(rowids, dtype=np.int64)
    return Postings(values, np.ones_like(values), np.full_like(values, 5))


def test_a_load_that_overlapped_a_write_is_not_kept() -> None:
    cache = PostingsCache()
    version = cache.version
    cache.invalidate(["w1"])  # a write committed while the load was reading
    cache.keep(version, Totals(2, 10), {"w1": postings(1, 2)})
    assert cache.cached(["w1"]) == (None, {}, ["w1"])

    version = cache.version
    cache.keep(version, Totals(2, 10), {"w1": postings(1, 2), "w2": postings()})
    totals, found, missing = cache.cached(["w1", "w2"])
    assert (totals, list(found), missing) == (Totals(2, 10), ["w1"], ["w2"])  # no empty lists
    cache.invalidate(["w1"])
    assert cache.cached(["w1"]) == (None, {}, ["w1"])
