"""A data directory of the previous layout (passages with their own id, a document index
and analysed ``terms``; no sizes beside the log's sequence) opens: its passages are
rewritten keyed by (document, ordinal) without terms, the sizes are counted once, and
every document is found again through a new index. The sizes then follow every write."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from switchboard_server.context.domain import prepare
from switchboard_server.context.store.sqlite import SqliteStore
from switchboard_server.context.store.sqlite_sql import SCHEMA
from switchboard_server.context.tantivy_index import TantivyIndex
from switchboard_server.context.values import Document, MemoryType

CAPS = {MemoryType.WORKING: 3, MemoryType.EPISODIC: 5, MemoryType.SEMANTIC: 8}

# ``passages`` and ``kb_seq`` as the store made them before (550ab35)
PREVIOUS_PASSAGES = """
CREATE TABLE kb_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
CREATE TABLE passages (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    terms TEXT NOT NULL
);
CREATE INDEX passages_document ON passages (document_id);
"""


def previous_layout(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(PREVIOUS_PASSAGES + SCHEMA)  # the other tables are unchanged
    docs = {"refunds": ["Refunds take five days.", "Card refunds go back to the card."]}
    docs["shipping"] = ["Parcels ship within two working days."]
    for seq, (doc_id, passages) in enumerate(docs.items(), start=1):
        conn.execute(
            "INSERT INTO documents (id, title, metadata, created_at) VALUES (?, ?, '{}', 1.0)",
            (doc_id, doc_id.title()),
        )
        for n, content in enumerate(passages):
            conn.execute(
                "INSERT INTO passages (id, document_id, ordinal, title, content, terms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (f"{doc_id}#{n}", doc_id, n, doc_id.title(), content, content.lower()),
            )
        conn.execute("INSERT INTO kb_log (document_id, seq) VALUES (?, ?)", (doc_id, seq))
    conn.execute("UPDATE kb_seq SET seq = ?", (len(docs),))
    conn.close()


async def test_previous_layout_is_migrated_and_found_again(tmp_path: Path) -> None:
    path = tmp_path / "context.db"
    previous_layout(path)
    store = SqliteStore(path, CAPS)
    await store.open()
    index = TantivyIndex(tmp_path / "index", store)
    try:
        await index.open()
        assert index.applied_seq == 2
        found = await index.search("refunded cards", 8)
        assert found[0].passage_id == "refunds#1"
        rows = await store.knowledge_passages(["refunds#1", "shipping#0", "shipping#7", "x"])
        assert sorted(rows) == ["refunds#1", "shipping#0"]
        assert rows["refunds#1"].content == "Card refunds go back to the card."
        assert rows["refunds#1"].title == "Refunds"
        assert [p.passage_id for p in await store.passages_of(["refunds"])] == [
            "refunds#0",
            "refunds#1",
        ]
        assert await store.knowledge_size() == (2, 3)
    finally:
        await index.close()
        await store.close()
    conn = sqlite3.connect(path)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(passages)")]
    indexes = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    sizes = conn.execute("SELECT documents, passages FROM kb_seq").fetchone()
    conn.close()
    assert columns == ["rowid", "document_id", "ordinal", "title", "content"]
    assert "passages_document" not in indexes
    assert sizes == (2, 3)  # counted once, then kept by each write


def counted(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM passages)"
        ).fetchone()
        return int(row[0]), int(row[1])
    finally:
        conn.close()


async def test_sizes_follow_ingest_replace_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "context.db"
    store = SqliteStore(path, CAPS)
    await store.open()
    rng = random.Random(11)
    try:
        for step in range(30):
            ids = [f"d{rng.randint(0, 40)}" for _ in range(rng.randint(1, 6))]
            ids = list(dict.fromkeys(ids))
            if step % 4 == 3:
                await store.delete_documents(ids)
            else:
                docs = [Document(i, "t", "word. " * rng.randint(1, 90)) for i in ids]
                await store.ingest([prepare(d, 60) for d in docs], float(step))
            assert await store.knowledge_size() == counted(path), step
        stats = await store.knowledge_stats()
        assert (stats.documents, stats.passages) == counted(path)
    finally:
        await store.close()
