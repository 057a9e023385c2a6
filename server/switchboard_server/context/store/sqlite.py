"""SQLite backend: one file in the service's data directory, WAL, BM25 from postings.

Writes go through a group-commit writer (one connection; memory writes run their
statements on the event loop and commit on the writer thread, knowledge writes run
whole on the writer thread); reads use their own connection, on the event loop by
default (``readers=0``) or on reader threads, which WAL lets run beside the writer.
The knowledge base is ranked by BM25 over the index terms of ``text.terms``, with
FTS5's idf, normalised to [0, 1], from a ``postings`` table (term, passage, tf,
passage length) whose lists are read once and then ranked in memory
(``sqlite_index``): summing BM25 in SQL, or FTS5's ``bm25()``, made every query pay
for the SQL engine walking each posting again. The FTS5 table keeps each passage's
terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from switchboard_server import idempotency
from switchboard_server.context import bm25
from switchboard_server.context.store import outcomes
from switchboard_server.context.store.base import Generations
from switchboard_server.context.store.group_commit import GroupCommitWriter
from switchboard_server.context.store.sqlite_index import (
    Postings,
    PostingsIndex,
    Totals,
    best_passages,
    load_all,
)
from switchboard_server.context.store.sqlite_memory import MemoryMirror
from switchboard_server.context.store.sqlite_postings import backfill_postings, insert_postings
from switchboard_server.context.store.sqlite_rows import PassageRow, PassageRows
from switchboard_server.context.store.sqlite_sql import PASSAGES, SCHEMA
from switchboard_server.context.store.writer_thread import WriterThread
from switchboard_server.context.values import (
    AppendResult,
    DeleteResult,
    IngestResult,
    KnowledgeHit,
    KnowledgeStats,
    MemoryRecord,
    MemoryType,
    NewMemory,
    PreparedDocument,
)
from switchboard_server.idempotency import RequestKey

T = TypeVar("T")
Change = tuple[int, Sequence[str], bool]  # a passage's rowid, its terms, True when added
_TYPES = {t.value: t for t in MemoryType}
COMPACT_SLICE_S = 0.002  # background merging runs this long between turns of the loop


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class SqliteStore:
    """The embedded default backend (one process owns the file)."""

    def __init__(
        self,
        path: Path,
        caps: Mapping[MemoryType, int],
        *,
        synchronous: str = "FULL",
        match_budget: int = 1000,
        readers: int = 0,
        memory_entries: int = 100_000,
        passage_rows: int = 50_000,
        compact_after_s: float = 0.5,
        retention_s: float = 86_400.0,
    ) -> None:
        self._path = path
        self._retention_s = retention_s
        self._match_budget = match_budget
        self._caps = dict(caps)
        self._synchronous = synchronous
        self._write_thread = WriterThread("context-sqlite-w")
        self._read_threads = (
            ThreadPoolExecutor(readers, thread_name_prefix="context-sqlite-r") if readers else None
        )
        self._writer: GroupCommitWriter | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._local = threading.local()  # one read connection per reader thread
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._memory = MemoryMirror(caps, memory_entries)
        self._knowledge_gen = 0
        self._postings = PostingsIndex()
        self._compact_after_s = compact_after_s
        self._compaction: asyncio.Task[None] | None = None
        self._closing = False
        self._rows = PassageRows(passage_rows)

    # -- plumbing -------------------------------------------------------------------

    @property
    def concurrent_reads(self) -> bool:
        return self._read_threads is not None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)

        def open_writer() -> tuple[sqlite3.Connection, Totals, dict[str, Postings]]:
            conn = _connect(self._path, self._synchronous)
            conn.executescript(SCHEMA)
            conn.executescript(idempotency.SQLITE_SCHEMA)
            backfill_postings(conn)
            return conn, *load_all(conn)

        version = self._postings.version
        conn, totals, lists = await self._write_thread.run(open_writer)
        self._postings.fill(version, totals, lists)
        self._write_conn = conn
        self._writer = GroupCommitWriter(conn, self._write_thread)

    async def ping(self) -> None:
        """In process: reachable while open (a full disk fails writes, not reads)."""
        await self._read("SELECT 1")

    async def close(self) -> None:
        self._closing = True  # a write settling from now on starts no compaction
        if self._compaction is not None:
            self._compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compaction
            self._compaction = None
        if self._writer is not None:
            await self._writer.wait_idle()
        if self._write_conn is not None:
            await self._write_thread.run(self._write_conn.close)
        self._write_conn = self._writer = None
        self._write_thread.close()
        if self._read_threads is not None:
            self._read_threads.shutdown(wait=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    def _reader(self) -> sqlite3.Connection:
        """This reader thread's connection (opened on first use in the thread)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path, self._synchronous)
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return conn

    async def _in_reader(self, work: Callable[[], T]) -> T:
        """Run ``work`` on a reader thread, or inline when ``readers`` is 0.

        Inline reads skip a thread hand-off (expensive when the cores are contended)
        at the price of blocking the event loop while SQLite works; ``match_budget``
        bounds how long a knowledge query can take.
        """
        assert self._writer is not None, "store not open"
        if self._read_threads is None:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._read_threads, work)

    async def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._in_reader(lambda: self._reader().execute(query, params).fetchall())

    def _write(self) -> GroupCommitWriter:
        assert self._writer is not None, "store not open"
        return self._writer

    def _keyed(
        self,
        write: Callable[[sqlite3.Connection], T],
        key: RequestKey | None,
        codec: outcomes.Codec[T],
        replayed: list[T],
    ) -> Callable[[sqlite3.Connection], T]:
        """``write`` made idempotent under ``key``: in its transaction, a recorded outcome
        is returned (and put in ``replayed``) instead of writing, else the write's outcome
        is recorded with it."""
        if key is None:
            return write
        retention_s = self._retention_s

        def keyed(conn: sqlite3.Connection) -> T:
            replayed.clear()
            now = time.time()
            prior = idempotency.sqlite_replay(conn, key, now)
            if prior is not None:
                result = codec.decode(prior)
                replayed.append(result)
                return result
            result = write(conn)
            idempotency.sqlite_record(conn, key, codec.encode(result), now, retention_s)
            return result

        return keyed

    # -- memory ---------------------------------------------------------------------

    async def append_memory(
        self,
        session_id: str,
        entries: Sequence[NewMemory],
        now: float,
        *,
        key: RequestKey | None = None,
    ) -> AppendResult:
        ids = tuple(uuid.uuid4().hex for _ in entries)
        caps = self._caps
        seqs: list[int] = []
        replayed: list[AppendResult] = []

        def write(conn: sqlite3.Connection) -> AppendResult:
            seqs.clear()  # filled again if the write is ever retried
            for i, e in zip(ids, entries, strict=True):
                metadata = json.dumps(dict(e.metadata)) if e.metadata else "{}"
                rowid = conn.execute(
                    "INSERT INTO memory (id, session_id, type, content, metadata, created_at,"
                    " terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (i, session_id, e.type.value, e.content, metadata, now, " ".join(e.terms)),
                ).lastrowid
                assert rowid is not None, "an INSERT sets lastrowid"
                seqs.append(rowid)
            evicted: dict[MemoryType, int] = {}
            for memory_type in {e.type for e in entries}:
                # the row after the newest ``cap`` of the type and every older one go
                cur = conn.execute(
                    "DELETE FROM memory WHERE session_id = ? AND type = ? AND seq <="
                    " (SELECT seq FROM memory WHERE session_id = ? AND type = ?"
                    "  ORDER BY seq DESC LIMIT 1 OFFSET ?)",
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

        def settled(future: asyncio.Future[AppendResult]) -> None:
            if _failed(future) or replayed:  # a replay wrote nothing: read the session again
                self._memory.settle(session_id, failed=True)
                return
            appended = [
                MemoryRecord(
                    i, e.type, e.content, _frozen(e.metadata), now, seq, _interned(e.terms)
                )
                for i, e, seq in zip(ids, entries, seqs, strict=True)
            ]
            self._memory.settle(session_id, appended=appended, counts=future.result().counts)

        keyed = self._keyed(write, key, outcomes.APPEND, replayed)
        return await self._write_memory(session_id, keyed, settled)

    async def clear_memory(
        self, session_id: str, types: Collection[MemoryType], *, key: RequestKey | None = None
    ) -> int:
        replayed: list[int] = []
        values = [t.value for t in types]
        marks = ",".join("?" * len(values))

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"DELETE FROM memory WHERE session_id = ? AND type IN ({marks})",
                (session_id, *values),
            )
            return cur.rowcount

        def settled(future: asyncio.Future[int]) -> None:
            failed = _failed(future) or bool(replayed)  # a replay: read the session again
            self._memory.settle(session_id, cleared=set(types), failed=failed)

        keyed = self._keyed(write, key, outcomes.CLEAR, replayed)
        return await self._write_memory(session_id, keyed, settled)

    async def _write_memory(
        self,
        session_id: str,
        write: Callable[[sqlite3.Connection], T],
        settled: Callable[[asyncio.Future[T]], None],
    ) -> T:
        """Run a memory write of the session; ``settled`` updates the mirror (and the
        session's generation) once its transaction resolved, before its caller resumes,
        and also when the caller gave up waiting (the write still commits)."""
        future = self._write().enqueue(write, inline=True)
        self._memory.begin(session_id)
        future.add_done_callback(settled)
        return await asyncio.shield(future)

    async def memory_counts(self, session_id: str) -> Mapping[MemoryType, int]:
        rows = await self._read(
            "SELECT type, count(*) FROM memory WHERE session_id = ? GROUP BY type", (session_id,)
        )
        return _fill_counts(rows)

    async def list_memory(
        self, session_id: str, types: Collection[MemoryType]
    ) -> list[MemoryRecord]:
        """From the mirror; a session not held is read whole (every type) and kept."""
        records = self._memory.get(session_id)
        if records is None:
            token = self._memory.token(session_id)
            rows = await self._read(
                "SELECT id, type, content, metadata, created_at, seq, terms FROM memory"
                " WHERE session_id = ? ORDER BY seq",
                (session_id,),
            )
            records = [
                MemoryRecord(
                    r[0], _TYPES[r[1]], r[2], _frozen(_metadata(r[3])), r[4], r[5],
                    _interned(r[6].split()),
                )
                for r in rows
            ]  # fmt: skip
            self._memory.fill(session_id, records, token)
        if len(types) >= len(_TYPES) and set(types) == set(_TYPES):
            return list(records)
        return [r for r in records if r.type in types]

    # -- knowledge base -------------------------------------------------------------

    async def ingest(
        self,
        documents: Sequence[PreparedDocument],
        now: float,
        *,
        key: RequestKey | None = None,
    ) -> IngestResult:
        changes: list[Change] = []
        rows: dict[int, PassageRow] = {}

        def write(conn: sqlite3.Connection) -> IngestResult:
            replaced = 0
            for prepared in documents:
                doc = prepared.document
                metadata = _frozen(doc.metadata)
                replaced += _delete_document(conn, doc.id, changes)
                conn.execute(
                    "INSERT INTO documents (id, title, metadata, created_at) VALUES (?, ?, ?, ?)",
                    (doc.id, doc.title, json.dumps(dict(doc.metadata)), now),
                )
                for p in prepared.passages:
                    rowid = conn.execute(
                        "INSERT INTO passages (id, document_id, ordinal, title, content, length)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (p.id, p.document_id, p.ordinal, p.title, p.content, len(p.terms)),
                    ).lastrowid
                    assert rowid is not None, "an INSERT sets lastrowid"
                    conn.execute(
                        "UPDATE kb_stats SET passages = passages + 1, terms = terms + ?",
                        (len(p.terms),),
                    )
                    conn.execute(
                        "INSERT INTO passages_fts (rowid, terms) VALUES (?, ?)",
                        (rowid, " ".join(p.terms)),
                    )
                    insert_postings(conn, rowid, p.terms)
                    changes.append((rowid, p.terms, True))
                    rows[rowid] = PassageRow(p.id, p.document_id, p.title, p.content, metadata, now)
            passages = sum(len(d.passages) for d in documents)
            return IngestResult(len(documents), passages, replaced)

        keyed = self._keyed(write, key, outcomes.INGEST, [])
        return await self._write_knowledge(keyed, changes, rows)

    async def delete_documents(
        self, document_ids: Sequence[str], *, key: RequestKey | None = None
    ) -> DeleteResult:
        changes: list[Change] = []

        def write(conn: sqlite3.Connection) -> DeleteResult:
            missing = tuple(i for i in document_ids if not _delete_document(conn, i, changes))
            return DeleteResult(len(document_ids) - len(missing), missing)

        return await self._write_knowledge(self._keyed(write, key, outcomes.DELETE, []), changes)

    async def _write_knowledge(
        self,
        write: Callable[[sqlite3.Connection], T],
        changes: list[Change],
        rows: Mapping[int, PassageRow] | None = None,
    ) -> T:
        """Run a knowledge write; once it committed, hand the passages it removed and
        added (``changes``, complete when it returns) to the postings index and the
        passage rows (with the ``rows`` it added), and bump the generation. When it
        failed, its outcome is unknown: the index is read again by the next query and
        no row is kept. Either way this happens once the transaction resolved, also
        when the caller gave up waiting."""
        future = self._write().enqueue(write)

        def settled(future: asyncio.Future[T]) -> None:
            if _failed(future):
                self._postings.invalidate()
                self._rows.clear()
            else:
                self._postings.apply(changes)
                self._rows.apply((rowid for rowid, _, _ in changes), rows or {})
                self._compact_soon()
            self._knowledge_gen += 1

        future.add_done_callback(settled)
        return await asyncio.shield(future)

    def _compact_soon(self) -> None:
        if self._closing or not self._postings.pending:
            return
        if self._compaction is None or self._compaction.done():
            self._compaction = asyncio.get_running_loop().create_task(self._compact())

    async def _compact(self) -> None:
        """Merge the postings overlays that knowledge writes left, once the writes
        pause for ``compact_after_s``, ``COMPACT_SLICE_S`` at a time between the
        loop's other work (one term's merge is short); a write meanwhile starts the
        wait again. Otherwise the first query of each term after an ingest would
        merge it, and the queries right after a bulk ingest would pay for every
        merge."""
        index = self._postings
        while index.pending:
            version = index.version
            await asyncio.sleep(self._compact_after_s)
            while index.version == version and index.pending:
                until = time.perf_counter() + COMPACT_SLICE_S
                while index.compact(1) and time.perf_counter() < until:
                    pass
                await asyncio.sleep(0)  # the loop's other work between slices

    async def search_knowledge(self, query: Sequence[str], limit: int) -> list[KnowledgeHit]:
        """BM25 ranking over the in-memory postings (``sqlite_index.best_passages``),
        bounded in cost by ``match_budget``; SQL reads only the passages found (and
        every list again after a failed knowledge write)."""
        if not query:
            return []
        index = self._postings
        if index.stale:  # a knowledge write failed: read the whole table again
            version = index.version
            totals, every = await self._in_reader(lambda: load_all(self._reader()))
            index.fill(version, totals, every)
            lists = {t: every[t] for t in query if t in every}
        else:
            totals, lists = index.lookup(query)
        best = best_passages(lists, totals, query, limit, self._match_budget)
        if not best:
            return []
        rows, missing = self._rows.lookup([rowid for rowid, _ in best])
        if missing:
            version = self._rows.version
            read = {
                r[0]: PassageRow(r[1], r[2], r[3], r[4], _frozen(_metadata(r[5])), r[6])
                for r in await self._in_reader(lambda: _in(self._reader(), PASSAGES, missing))
            }
            self._rows.fill(version, read)
            rows.update(read)
        idfs = [bm25.fts5_idf(totals.passages, len(lists[t]) if t in lists else 0) for t in query]
        return [
            KnowledgeHit(*r, bm25.normalise(score, idfs))
            for rowid, score in best
            if (r := rows.get(rowid)) is not None
        ]

    async def knowledge_size(self) -> tuple[int, int]:
        rows = await self._read(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM passages)"
        )
        return int(rows[0][0]), int(rows[0][1])

    async def knowledge_stats(self) -> KnowledgeStats:
        rows = await self._read(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM passages),"
            " (SELECT max(created_at) FROM documents)"
        )
        documents, passages, updated = rows[0]
        # Everything of the knowledge base lives in the one database file (with its WAL).
        size = sum(
            p.stat().st_size
            for p in (self._path, self._path.with_name(self._path.name + "-wal"))
            if p.exists()
        )
        return KnowledgeStats(int(documents), int(passages), size, updated)

    async def list_document_ids(self, prefix: str, after: str, limit: int) -> list[str]:
        rows = await self._read(
            "SELECT id FROM documents WHERE substr(id, 1, ?) = ? AND id > ? ORDER BY id LIMIT ?",
            (len(prefix), prefix, after, limit),
        )
        return [str(r[0]) for r in rows]

    # -- cache support --------------------------------------------------------------

    async def generations(self, session_id: str) -> Generations:
        return Generations(self._memory.generation(session_id), self._knowledge_gen)

    async def is_seeded(self) -> bool:
        return bool(await self._read("SELECT 1 FROM meta WHERE key = 'seeded'"))

    async def mark_seeded(self) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('seeded', '1')")

        await self._write().submit(write)


def _metadata(raw: str) -> dict[str, str]:
    return {} if raw == "{}" else dict(json.loads(raw))


_NO_METADATA: Mapping[str, str] = MappingProxyType({})


def _frozen(metadata: Mapping[str, str]) -> Mapping[str, str]:
    """Metadata held by a mirror and shared by every result that shows it: read-only."""
    return MappingProxyType(dict(metadata)) if metadata else _NO_METADATA


def _interned(terms: Iterable[str]) -> tuple[str, ...]:
    """Terms held by the memory mirror, one string per distinct term (half its size)."""
    return tuple(map(sys.intern, terms))


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None


def _in(conn: sqlite3.Connection, query: str, values: Sequence[Any]) -> list[Any]:
    """Run ``query`` whose ``IN ({})`` takes ``values``."""
    if not values:
        return []
    return conn.execute(query.format(",".join("?" * len(values))), tuple(values)).fetchall()


def _delete_document(conn: sqlite3.Connection, document_id: str, changes: list[Change]) -> int:
    """Delete a document and its passages; 1 if it existed, else 0. Adds each deleted
    passage to ``changes``."""
    rowids = conn.execute(
        "SELECT rowid FROM passages WHERE document_id = ?", (document_id,)
    ).fetchall()
    for (rowid,) in rowids:
        (terms,) = conn.execute(
            "SELECT terms FROM passages_fts WHERE rowid = ?", (rowid,)
        ).fetchone()
        words = terms.split()
        changes.append((rowid, words, False))
        conn.executemany(
            "DELETE FROM postings WHERE term = ? AND passage = ?",
            [(t, rowid) for t in set(words)],
        )
        conn.execute(
            "UPDATE kb_stats SET passages = passages - 1, terms = terms - ?", (len(words),)
        )
    conn.executemany("DELETE FROM passages_fts WHERE rowid = ?", rowids)
    conn.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
    return conn.execute("DELETE FROM documents WHERE id = ?", (document_id,)).rowcount


def _fill_counts(rows: Sequence[Sequence[Any]]) -> dict[MemoryType, int]:
    counts = dict.fromkeys(MemoryType, 0)
    for memory_type, count in rows:
        counts[_TYPES[memory_type]] = int(count)
    return counts


def _counts(conn: sqlite3.Connection, session_id: str) -> dict[MemoryType, int]:
    return _fill_counts(
        conn.execute(
            "SELECT type, count(*) FROM memory WHERE session_id = ? GROUP BY type", (session_id,)
        ).fetchall()
    )
