"""The durable conversation log behind GetConversation: SQLite in the service's data dir.

Each turn is committed (WAL, ``synchronous=FULL``) before the chat turn is answered.
The index of a turn is assigned inside the insert, so concurrent turns of one
session get distinct, gapless indices. A turn with a request_id records its answer
under the key in the same transaction (``idempotency.SQLITE_SCHEMA``), so a turn and
its recorded answer exist together or not at all; a key another process sharing the
file recorded meanwhile raises ``TurnAlreadyRecorded``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from switchboard_server import idempotency
from switchboard_server.errors import Unavailable
from switchboard_server.idempotency import RequestKey
from switchboard_server.orchestration.ports import DependencyFailed, TurnAlreadyRecorded
from switchboard_server.orchestration.values import Alternative, Intent, Turn, TurnPage

log = structlog.get_logger(__name__)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    session_id     TEXT    NOT NULL,
    idx            INTEGER NOT NULL,
    user_message   TEXT    NOT NULL,
    reply          TEXT    NOT NULL,
    intent_json    TEXT    NOT NULL,
    ts             TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    PRIMARY KEY (session_id, idx)
) WITHOUT ROWID;
"""

_INSERT = """
INSERT INTO turns (session_id, idx, user_message, reply, intent_json, ts, correlation_id)
SELECT ?, COALESCE(MAX(idx) + 1, 0), ?, ?, ?, ?, ? FROM turns WHERE session_id = ?
RETURNING idx
"""


def _intent_to_json(intent: Intent) -> str:
    return json.dumps(asdict(intent), separators=(",", ":"))


def _intent_from_json(text: str) -> Intent:
    data = json.loads(text)
    data["alternatives"] = tuple(Alternative(**a) for a in data.get("alternatives", ()))
    return Intent(**data)


class SqliteConversationLog:
    """Turns of every session; open with :meth:`open`, close with :meth:`close`."""

    FILE_NAME = "conversations.sqlite3"

    def __init__(self, directory: Path, *, retention_s: float = 86_400.0) -> None:
        self._path = directory / self.FILE_NAME
        self._retention_s = retention_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking SQLite work on the log's own thread (not the shared default pool)."""
        if self._executor is None:
            raise sqlite3.ProgrammingError("conversation log is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="conversation-log")
        await self._run(self._open)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        conn.executescript(idempotency.SQLITE_SCHEMA)
        self._conn = conn

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("conversation log is not open")
        return self._conn

    async def append(
        self,
        session_id: str,
        turn: Turn,
        *,
        key: RequestKey | None = None,
        outcome: Callable[[int], str] = str,
    ) -> int:
        try:
            return await self._run(self._append, session_id, turn, key, outcome)
        except sqlite3.Error as exc:
            log.error("conversation_log.write_failed", error=type(exc).__name__)
            raise DependencyFailed("STORAGE_ERROR") from exc

    async def replay(self, key: RequestKey) -> str | None:
        try:
            return await self._run(self._replay, key)
        except sqlite3.Error as exc:
            log.error("conversation_log.read_failed", error=type(exc).__name__)
            raise Unavailable("the conversation log cannot be read now") from exc

    def _replay(self, key: RequestKey) -> str | None:
        with self._lock:
            return idempotency.sqlite_replay(self._connection(), key, time.time())

    def _append(
        self, session_id: str, turn: Turn, key: RequestKey | None, outcome: Callable[[int], str]
    ) -> int:
        with self._lock:
            conn = self._connection()
            if key is None:
                return self._insert(conn, session_id, turn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                recorded = idempotency.sqlite_replay(conn, key, now)
                if recorded is not None:  # another process sharing the file committed it
                    raise TurnAlreadyRecorded(recorded)
                index = self._insert(conn, session_id, turn)
                idempotency.sqlite_record(conn, key, outcome(index), now, self._retention_s)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return index

    @staticmethod
    def _insert(conn: sqlite3.Connection, session_id: str, turn: Turn) -> int:
        row = conn.execute(
            _INSERT,
            (
                session_id,
                turn.user_message,
                turn.reply,
                _intent_to_json(turn.intent),
                turn.timestamp.isoformat(),
                turn.correlation_id,
                session_id,
            ),
        ).fetchone()
        return int(row[0])

    async def page(self, session_id: str, start: int, size: int) -> TurnPage:
        try:
            return await self._run(self._page, session_id, start, size)
        except sqlite3.Error as exc:
            log.error("conversation_log.read_failed", error=type(exc).__name__)
            raise Unavailable("the conversation log cannot be read now") from exc

    def _page(self, session_id: str, start: int, size: int) -> TurnPage:
        with self._lock:
            conn = self._connection()
            total = int(
                conn.execute(
                    "SELECT COUNT(*) FROM turns WHERE session_id = ?", (session_id,)
                ).fetchone()[0]
            )
            rows = conn.execute(
                "SELECT idx, user_message, reply, intent_json, ts, correlation_id FROM turns "
                "WHERE session_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
                (session_id, start, size + 1),
            ).fetchall()
        turns = tuple(
            Turn(
                index=int(r[0]),
                user_message=r[1],
                reply=r[2],
                intent=_intent_from_json(r[3]),
                timestamp=datetime.fromisoformat(r[4]),
                correlation_id=r[5],
            )
            for r in rows[:size]
        )
        next_index = int(rows[size][0]) if len(rows) > size else None
        return TurnPage(turns, next_index, total)
