"""SQLite backend: one file in the service's data directory, WAL, BM25 from postings.

Writes go through a group-commit writer (one connection; memory writes run their
statements on the event loop and commit on the writer thread, knowledge writes run
whole on the writer thread); reads use their own connection, on the event loop by
default (``readers=0``) or on reader threads, which WAL lets run beside the writer.
The knowledge base keeps its documents, their passages (title and content, nothing
analysed) and the document log here (``sqlite_knowledge``); the knowledge index
(``tantivy_index``) ranks them and is fed from the log.
"""

from __future__ import annotations

import asyncio
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
from switchboard_server.context.knowledge_index import IndexedPassage, LogEntry
from switchboard_server.context.store import outcomes, sqlite_knowledge
from switchboard_server.context.store.base import Generations
from switchboard_server.context.store.group_commit import GroupCommitWriter
from switchboard_server.context.store.sqlite_memory import MemoryMirror
from switchboard_server.context.store.sqlite_sql import SCHEMA, migrate
from switchboard_server.context.store.writer_thread import WriterThread
from switchboard_server.context.values import (
    AppendResult,
    DeleteResult,
    IngestResult,
    KnowledgeStats,
    MemoryRecord,
    MemoryType,
    NewMemory,
    PassageRow,
    PreparedDocument,
)
from switchboard_server.idempotency import RequestKey

T = TypeVar("T")
_TYPES = {t.value: t for t in MemoryType}


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
        readers: int = 0,
        memory_entries: int = 100_000,
        retention_s: float = 86_400.0,
    ) -> None:
        self._path = path
        self._retention_s = retention_s
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

    # -- plumbing -------------------------------------------------------------------

    @property
    def concurrent_reads(self) -> bool:
        return self._read_threads is not None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)

        def open_writer() -> sqlite3.Connection:
            conn = _connect(self._path, self._synchronous)
            migrate(conn)
            conn.executescript(SCHEMA)
            conn.executescript(idempotency.SQLITE_SCHEMA)
            return conn

        conn = await self._write_thread.run(open_writer)
        self._write_conn = conn
        self._writer = GroupCommitWriter(conn, self._write_thread)

    async def ping(self) -> None:
        """In process: reachable while open (a full disk fails writes, not reads)."""
        await self._read("SELECT 1")

    async def close(self) -> None:
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
        at the price of blocking the event loop while SQLite works.
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
        def write(conn: sqlite3.Connection) -> IngestResult:
            return sqlite_knowledge.ingest(conn, documents, now)

        return await self._write_knowledge(self._keyed(write, key, outcomes.INGEST, []))

    async def delete_documents(
        self, document_ids: Sequence[str], *, key: RequestKey | None = None
    ) -> DeleteResult:
        def write(conn: sqlite3.Connection) -> DeleteResult:
            return sqlite_knowledge.delete(conn, document_ids)

        return await self._write_knowledge(self._keyed(write, key, outcomes.DELETE, []))

    async def _write_knowledge(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run a knowledge write on the writer thread; the generation moves once its
        transaction resolved, also when the caller gave up waiting."""
        future = self._write().enqueue(write)

        def settled(_: asyncio.Future[T]) -> None:
            self._knowledge_gen += 1

        future.add_done_callback(settled)
        return await asyncio.shield(future)

    async def knowledge_passages(self, passage_ids: Sequence[str]) -> dict[str, PassageRow]:
        rows = await self._in_reader(
            lambda: sqlite_knowledge.passages_by_id(self._reader(), passage_ids)
        )
        return {
            r[0]: PassageRow(r[0], r[1], r[2], r[3], _frozen(_metadata(r[4])), r[5]) for r in rows
        }

    # -- the document log -----------------------------------------------------------

    async def log_head(self) -> int:
        rows = await self._read("SELECT seq FROM kb_seq")
        return int(rows[0][0]) if rows else 0

    async def changes_since(self, seq: int, limit: int) -> list[LogEntry]:
        rows = await self._read(
            "SELECT seq, document_id FROM kb_log WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [LogEntry(int(r[0]), r[1]) for r in rows]

    async def passages_of(self, document_ids: Sequence[str]) -> list[IndexedPassage]:
        return await self._in_reader(
            lambda: sqlite_knowledge.passages_of(self._reader(), document_ids)
        )

    async def knowledge_size(self) -> tuple[int, int]:
        rows = await self._read("SELECT documents, passages FROM kb_seq")
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    async def knowledge_stats(self) -> KnowledgeStats:
        rows = await self._read(
            "SELECT documents, passages, (SELECT max(created_at) FROM documents) FROM kb_seq"
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
