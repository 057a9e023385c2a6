"""The SQLite backend ranks from postings held in memory: what it answers after
ingests, re-ingests, deletes and a failed write is what a store opened afresh on the
same file answers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from switchboard_server.context import bm25
from switchboard_server.context.domain import prepare
from switchboard_server.context.store import sqlite as sqlite_store
from switchboard_server.context.store.sqlite import SqliteStore
from switchboard_server.context.store.sqlite_index import (
    Postings,
    PostingsIndex,
    Totals,
    best_passages,
)
from switchboard_server.context.values import Document, KnowledgeHit, MemoryType

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


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path, CAPS, match_budget=BUDGET)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def fresh_answers(path: Path) -> list[list[KnowledgeHit]]:
    """What a store opened now on the same file (nothing cached yet) answers."""
    async with opened(path) as store:
        return await answers(store)


async def test_answers_follow_every_write(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    async with opened(path) as store:
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


async def test_a_failed_write_changes_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ctx.sqlite3"
    async with opened(path) as store:
        await store.ingest([prepare(d, 700) for d in documents(range(30), seed=1)], now=1.0)
        before = await answers(store)

        def fail(*args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(sqlite_store, "insert_postings", fail)
        new = Document("doc-new", "t", "new w1 w3")
        with pytest.raises(sqlite3.OperationalError):
            await store.ingest([prepare(d, 700) for d in [*documents(range(5), 9), new]], 2.0)
        monkeypatch.undo()
        assert await answers(store) == before == await fresh_answers(path)  # nothing written


async def test_a_write_whose_caller_gave_up_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    async with opened(path) as store:
        await store.ingest([prepare(d, 700) for d in documents(range(30), seed=1)], now=1.0)
        await answers(store)
        new = prepare(Document("doc-new", "t", "new w1 w3"), 700)
        ingest = asyncio.create_task(store.ingest([new], now=2.0))
        await asyncio.sleep(0)  # queued for the writer
        ingest.cancel()  # e.g. the client's deadline ran out: the write still commits
        with pytest.raises(asyncio.CancelledError):
            await ingest
        await store.ingest([prepare(Document("doc-later", "t", "w2"), 700)], now=3.0)
        found = await answers(store)
        assert found[-1][0].passage_id == "doc-new#0"
        assert found == await fresh_answers(path)


async def until_compacted(store: SqliteStore, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while store._postings.pending:
        assert loop.time() < deadline, "the index was never compacted"
        await asyncio.sleep(0.01)


async def test_the_index_is_compacted_once_writes_pause(tmp_path: Path) -> None:
    """What ingests, re-ingests and deletes leave unmerged is merged in the background
    once writes pause, not by the queries after them; the answers stay those of a
    store opened afresh."""
    path = tmp_path / "ctx.sqlite3"
    store = SqliteStore(path, CAPS, match_budget=BUDGET, compact_after_s=0.2)
    await store.open()
    try:
        await store.ingest([prepare(d, 700) for d in documents(range(60), seed=1)], now=1.0)
        assert store._postings.pending  # writes may follow: nothing merged yet
        await until_compacted(store)
        assert await answers(store) == await fresh_answers(path)

        replaced = documents(range(10, 30), seed=2)  # same ids, other text
        await store.ingest([prepare(d, 700) for d in replaced], now=2.0)
        await store.delete_documents(["doc-3", "doc-4"])
        assert store._postings.pending
        await until_compacted(store)
        assert await answers(store) == await fresh_answers(path)
    finally:
        await store.close()


async def test_closing_leaves_no_compaction_behind(tmp_path: Path) -> None:
    """A write that settles while the store closes starts no background merge."""
    store = SqliteStore(tmp_path / "ctx.sqlite3", CAPS, compact_after_s=60)
    await store.open()
    ingest = asyncio.create_task(
        store.ingest([prepare(d, 700) for d in documents(range(20), seed=1)], now=1.0)
    )
    await asyncio.sleep(0)  # queued for the writer
    await store.close()
    await ingest
    await asyncio.sleep(0)  # every callback of the settled write has run
    assert store._compaction is None


def test_compact_merges_a_slice_of_terms_at_a_time() -> None:
    index = PostingsIndex()
    index.fill(index.version, Totals(2, 10), postings(1, 2))
    index.apply([(3, ["w1", "w2"], True), (4, ["w3", "w1"], True), (1, ["w1"], False)])
    assert index.pending == 3
    assert index.compact(2) == 1
    assert index.compact(2) == 0
    totals, found = index.lookup(["w1", "w2", "w3"])
    assert totals == Totals(3, 13)
    assert found["w1"].passages.tolist() == [2, 3, 4]
    assert found["w1"].length.tolist() == [5, 2, 2]
    assert found["w2"].passages.tolist() == [3]
    assert found["w3"].passages.tolist() == [4]


def postings(*rowids: int) -> dict[str, Postings]:
    values = np.array(rowids, dtype=np.int64)
    return {"w1": Postings(values, np.ones_like(values), np.full_like(values, 5))}


def test_a_read_that_overlapped_a_write_is_not_kept() -> None:
    index = PostingsIndex()
    version = index.version
    index.apply([(3, ["w1"], True)])  # a write committed while the table was read
    index.fill(version, Totals(2, 10), postings(1, 2))
    assert index.stale

    index.fill(index.version, Totals(2, 10), postings(1, 2))
    index.apply([(3, ["w1", "w1"], True), (1, ["w1"], False)])
    totals, found = index.lookup(["w1", "w2"])
    assert totals == Totals(2, 11)
    assert found["w1"].passages.tolist() == [2, 3]
    assert found["w1"].tf.tolist() == [1, 2]
    assert not len(found["w2"])


def test_best_passages_sum_each_passage_term_by_term() -> None:
    """With every term matched (no budget cut), the ranking is each passage's BM25
    summed in ascending term order from 0.0, best first, ties by rowid: the same
    doubles as a plain Python sum."""
    rng = random.Random(4)
    lists: dict[str, Postings] = {}
    for term in WORDS[:12]:
        rowids = np.array(sorted(rng.sample(range(1, 400), rng.randint(1, 150))), dtype=np.int64)
        tf = np.array([rng.randint(1, 4) for _ in rowids], dtype=np.int64)
        lists[term] = Postings(rowids, tf, np.array([rng.randint(3, 40) for _ in rowids]))
    totals = Totals(400, 400 * 20)
    for _ in range(200):
        query = list(dict.fromkeys(rng.choices(WORDS[:14], k=rng.randint(1, 9))))
        limit = rng.choice([1, 5, 20])
        found = best_passages(lists, totals, query, limit, budget=10**9)
        df = {t: len(lists[t]) for t in query if t in lists}
        idf = {t: bm25.fts5_idf(totals.passages, n) for t, n in df.items()}
        useful = sorted(t for t in df if idf[t] > bm25.FTS5_MIN_IDF) or sorted(df)
        sums: dict[int, float] = {}
        for term in useful:  # ascending term order, like the SQL it replaced
            scores = lists[term].scores(idf[term], totals.terms / totals.passages)
            for rowid, score in zip(lists[term].passages.tolist(), scores.tolist(), strict=True):
                sums[rowid] = sums.get(rowid, 0.0) + score
        expected = sorted(sums.items(), key=lambda item: (-item[1], item[0]))[:limit]
        assert found == expected
