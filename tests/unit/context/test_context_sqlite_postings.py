"""SQLite knowledge ranking from the postings table: the same scores as FTS5's
``bm25()``, postings kept in step with ingest and delete, and filled in once for a
database written before the table existed."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard_server.context.domain import prepare
from switchboard_server.context.store.sqlite import SqliteStore
from switchboard_server.context.values import Document, MemoryType

CAPS = dict.fromkeys(MemoryType, 10)
WORDS = [f"w{i}" for i in range(60)]


def documents(count: int, seed: int = 3) -> list[Document]:
    rng = random.Random(seed)
    return [
        Document(f"doc-{d}", f"title {d}", " ".join(rng.choices(WORDS, k=rng.randint(5, 40))))
        for d in range(count)
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "ctx.sqlite3", CAPS)
    await store.open()
    await store.ingest([prepare(d, 700) for d in documents(80)], now=1.0)
    yield store
    await store.close()


async def search(store: SqliteStore, terms: list[str]) -> list[tuple[str, float]]:
    return [(h.passage_id, h.relevance) for h in await store.search_knowledge(terms, 10)]


def sql(path: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query, params).fetchall()


async def test_postings_score_like_fts5_bm25(store: SqliteStore, tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    for query in (["w1"], ["w3", "w7"], ["w2", "w5", "w40", "w59"]):
        fts5 = sql(
            path,
            "SELECT p.id, -bm25(passages_fts) FROM passages_fts JOIN passages p"
            " ON p.rowid = passages_fts.rowid WHERE passages_fts MATCH ?",
            " OR ".join(query),
        )
        bm25 = {str(i): float(score) for i, score in fts5}  # type: ignore[arg-type]
        best = max(bm25.values())
        found = await search(store, query)
        ranked = sorted(bm25.values(), reverse=True)[: len(found)]  # ties may swap ids
        assert [bm25[i] for i, _ in found] == pytest.approx(ranked, rel=1e-9)
        top = found[0][1]
        for passage_id, relevance in found:  # scores in the same ratios as bm25()'s
            assert relevance / top == pytest.approx(bm25[passage_id] / best, rel=1e-9)


async def test_postings_follow_ingest_and_delete(store: SqliteStore, tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"

    def expected() -> int:
        rows = sql(path, "SELECT terms FROM passages_fts")
        return sum(len(set(str(terms).split())) for (terms,) in rows)

    assert sql(path, "SELECT count(*) FROM postings")[0][0] == expected()
    await store.delete_documents(["doc-1", "doc-2"])
    await store.ingest([prepare(Document("doc-3", "new", "w1 w1 w2"), 700)], now=2.0)
    assert sql(path, "SELECT count(*) FROM postings")[0][0] == expected()
    assert sql(path, "SELECT tf, length FROM postings WHERE term = 'w1' AND passage ="
               " (SELECT rowid FROM passages WHERE document_id = 'doc-3')") == [(2, 4)]  # fmt: skip


async def test_an_older_database_gets_its_postings_on_open(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    store = SqliteStore(path, CAPS)
    await store.open()
    await store.ingest([prepare(d, 700) for d in documents(40)], now=1.0)
    before = await search(store, ["w4", "w9", "w33"])
    await store.close()
    with sqlite3.connect(path) as conn:  # as written before the postings table existed
        conn.execute("DROP TABLE postings")
        conn.execute("DELETE FROM meta WHERE key = 'postings'")

    reopened = SqliteStore(path, CAPS)
    await reopened.open()
    try:
        assert await search(reopened, ["w4", "w9", "w33"]) == before
    finally:
        await reopened.close()
