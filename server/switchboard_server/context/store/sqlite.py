"""SQLite backend: one file in the service's data directory, WAL, FTS5 for BM25.

Writes go through a group-commit writer (one thread, one connection); reads use
a second connection on another thread, which WAL lets run beside the writer.
The knowledge base is ranked by FTS5's ``bm25()`` over the index terms of
``text.terms``, normalised to [0, 1] with the same idf FTS5 uses.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from switchboard_server.context import bm25
from switchboard_server.context.model import (
    AppendResult,
    DeleteResult,
    IngestResult,
    KnowledgeHit,
    MemoryRecord,
    MemoryType,
    NewMemory,
    PreparedDocument,
)
from switchboard_server.context.store.base import Generations
from switchboard_server.context.store.group_commit import GroupCommitWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memory (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    terms TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_session ON memory (session_id, type, seq);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_document ON passages (document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts
    USING fts5 (terms, tokenize = 'unicode61 remove_diacritics 0');
CREATE VIRTUAL TABLE IF NOT EXISTS passages_vocab USING fts5vocab (passages_fts, 'row');
"""

SEARCH = """
WITH hits AS (
    SELECT rowid, -bm25(passages_fts) AS score FROM passages_fts
    WHERE passages_fts MATCH ? ORDER BY bm25(passages_fts) LIMIT ?
)
SELECT p.id, p.document_id, p.title, p.content, d.metadata, d.created_at, hits.score
FROM hits JOIN passages p ON p.rowid = hits.rowid JOIN documents d ON d.id = p.document_id
ORDER BY hits.score DESC, p.id
"""


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class SqliteStore:
    """The embedded default backend (one process owns the file)."""

    def __init__(
        self, path: Path, caps: Mapping[MemoryType, int], *, synchronous: str = "FULL"
    ) -> None:
        self._path = path
        self._caps = dict(caps)
        self._synchronous = synchronous
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="context-sqlite-w")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="context-sqlite-r")
        self._writer: GroupCommitWriter | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._session_gen: dict[str, int] = defaultdict(int)
        self._knowledge_gen = 0
        self._passage_total: tuple[int, int] | None = None  # (knowledge_gen, passages)

    # -- plumbing -------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._path.parent.mkdir(parents=True, exist_ok=True)

        def open_writer() -> sqlite3.Connection:
            conn = _connect(self._path, self._synchronous)
            conn.executescript(SCHEMA)
            return conn

        self._write_conn = await loop.run_in_executor(self._write_thread, open_writer)
        self._read_conn = await loop.run_in_executor(
            self._read_thread, _connect, self._path, self._synchronous
        )
        self._writer = GroupCommitWriter(self._write_conn, self._write_thread)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await self._writer.wait_idle()
        if self._write_conn is not None:
            await loop.run_in_executor(self._write_thread, self._write_conn.close)
        if self._read_conn is not None:
            await loop.run_in_executor(self._read_thread, self._read_conn.close)
        self._write_conn = self._read_conn = self._writer = None
        self._write_thread.shutdown(wait=True)
        self._read_thread.shutdown(wait=True)

    async def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._read_conn
        assert conn is not None, "store not open"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_thread, lambda: conn.execute(query, params).fetchall()
        )

    def _write(self) -> GroupCommitWriter:
        assert self._writer is not None, "store not open"
        return self._writer

    # -- memory ---------------------------------------------------------------------

    async def append_memory(
        self, session_id: str, entries: Sequence[NewMemory], now: float
    ) -> AppendResult:
        ids = tuple(uuid.uuid4().hex for _ in entries)
        caps = self._caps

        def write(conn: sqlite3.Connection) -> AppendResult:
            conn.executemany(
                "INSERT INTO memory (id, session_id, type, content, metadata, created_at, terms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        i,
                        session_id,
                        e.type.value,
                        e.content,
                        json.dumps(dict(e.metadata)),
                        now,
                        " ".join(e.terms),
                    )
                    for i, e in zip(ids, entries, strict=True)
                ],
            )
            evicted: dict[MemoryType, int] = {}
            for memory_type in {e.type for e in entries}:
                cur = conn.execute(
                    "DELETE FROM memory WHERE session_id = ? AND type = ? AND seq NOT IN"
                    " (SELECT seq FROM memory WHERE session_id = ? AND type = ?"
                    "  ORDER BY seq DESC LIMIT ?)",
                    (
                        session_id,
                        memory_type.value,
                        session_id,
                        memory_type.value,
                        caps[memory_type],
                    ),
                )
                evicted[memory_type] = cur.rowcount
            return AppendResult(ids, _counts(conn, session_id), evicted)

        result = await self._write().submit(write)
        self._session_gen[session_id] += 1
        return result

    async def clear_memory(self, session_id: str, types: Collection[MemoryType]) -> int:
        values = [t.value for t in types]
        marks = ",".join("?" * len(values))

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"DELETE FROM memory WHERE session_id = ? AND type IN ({marks})",
                (session_id, *values),
            )
            return cur.rowcount

        deleted = await self._write().submit(write)
        self._session_gen[session_id] += 1
        return deleted

    async def memory_counts(self, session_id: str) -> Mapping[MemoryType, int]:
        rows = await self._read(
            "SELECT type, count(*) FROM memory WHERE session_id = ? GROUP BY type", (session_id,)
        )
        return _fill_counts(rows)

    async def list_memory(
        self, session_id: str, types: Collection[MemoryType]
    ) -> list[MemoryRecord]:
        values = [t.value for t in types]
        marks = ",".join("?" * len(values))
        rows = await self._read(
            "SELECT id, type, content, metadata, created_at, seq, terms FROM memory"
            f" WHERE session_id = ? AND type IN ({marks}) ORDER BY seq",
            (session_id, *values),
        )
        return [
            MemoryRecord(
                r[0], MemoryType(r[1]), r[2], json.loads(r[3]), r[4], r[5], tuple(r[6].split())
            )
            for r in rows
        ]

    # -- knowledge base -------------------------------------------------------------

    async def ingest(self, documents: Sequence[PreparedDocument], now: float) -> IngestResult:
        def write(conn: sqlite3.Connection) -> IngestResult:
            replaced = 0
            for prepared in documents:
                doc = prepared.document
                replaced += _delete_document(conn, doc.id)
                conn.execute(
                    "INSERT INTO documents (id, title, metadata, created_at) VALUES (?, ?, ?, ?)",
                    (doc.id, doc.title, json.dumps(dict(doc.metadata)), now),
                )
                for p in prepared.passages:
                    cur = conn.execute(
                        "INSERT INTO passages (id, document_id, ordinal, title, content)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (p.id, p.document_id, p.ordinal, p.title, p.content),
                    )
                    conn.execute(
                        "INSERT INTO passages_fts (rowid, terms) VALUES (?, ?)",
                        (cur.lastrowid, " ".join(p.terms)),
                    )
            passages = sum(len(d.passages) for d in documents)
            return IngestResult(len(documents), passages, replaced)

        result = await self._write().submit(write)
        self._knowledge_gen += 1
        return result

    async def delete_documents(self, document_ids: Sequence[str]) -> DeleteResult:
        def write(conn: sqlite3.Connection) -> DeleteResult:
            missing = tuple(i for i in document_ids if not _delete_document(conn, i))
            return DeleteResult(len(document_ids) - len(missing), missing)

        result = await self._write().submit(write)
        self._knowledge_gen += 1
        return result

    async def search_knowledge(self, query: Sequence[str], limit: int) -> list[KnowledgeHit]:
        if not query:
            return []
        conn = self._read_conn
        assert conn is not None, "store not open"
        known_total = self._passage_total
        generation = self._knowledge_gen

        def search() -> tuple[int, list[Any], dict[str, int]]:
            if known_total is not None and known_total[0] == generation:
                total = known_total[1]
            else:
                total = conn.execute("SELECT count(*) FROM passages").fetchone()[0]
            match = " OR ".join(f'"{t}"' for t in query)
            rows = conn.execute(SEARCH, (match, limit)).fetchall()
            marks = ",".join("?" * len(query))
            df = dict(
                conn.execute(
                    f"SELECT term, doc FROM passages_vocab WHERE term IN ({marks})", tuple(query)
                ).fetchall()
            )
            return total, rows, df

        loop = asyncio.get_running_loop()
        total, rows, df = await loop.run_in_executor(self._read_thread, search)
        self._passage_total = (generation, total)
        idfs = [bm25.fts5_idf(total, df.get(t, 0)) for t in query]
        return [
            KnowledgeHit(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], bm25.normalise(r[6], idfs))
            for r in rows
        ]

    async def knowledge_size(self) -> tuple[int, int]:
        rows = await self._read(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM passages)"
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- cache support --------------------------------------------------------------

    async def generations(self, session_id: str) -> Generations:
        return Generations(self._session_gen.get(session_id, 0), self._knowledge_gen)

    async def is_seeded(self) -> bool:
        return bool(await self._read("SELECT 1 FROM meta WHERE key = 'seeded'"))

    async def mark_seeded(self) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('seeded', '1')")

        await self._write().submit(write)


def _delete_document(conn: sqlite3.Connection, document_id: str) -> int:
    """Delete a document and its passages; 1 if it existed, else 0."""
    rowids = conn.execute(
        "SELECT rowid FROM passages WHERE document_id = ?", (document_id,)
    ).fetchall()
    conn.executemany("DELETE FROM passages_fts WHERE rowid = ?", rowids)
    conn.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
    return conn.execute("DELETE FROM documents WHERE id = ?", (document_id,)).rowcount


def _fill_counts(rows: Sequence[Sequence[Any]]) -> dict[MemoryType, int]:
    counts = dict.fromkeys(MemoryType, 0)
    for memory_type, count in rows:
        counts[MemoryType(memory_type)] = int(count)
    return counts


def _counts(conn: sqlite3.Connection, session_id: str) -> dict[MemoryType, int]:
    return _fill_counts(
        conn.execute(
            "SELECT type, count(*) FROM memory WHERE session_id = ? GROUP BY type", (session_id,)
        ).fetchall()
    )
