"""Run-time examples in SQLite: durable (WAL, synchronous=FULL) before AddExamples returns.

An AddExamples with a request_id records its outcome in the same transaction as its
examples (``idempotency.SQLITE_SCHEMA``), so a repeat finds it and adds nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from switchboard_server import idempotency
from switchboard_server.classification.dataset import Example
from switchboard_server.idempotency import RequestKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS examples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    intent TEXT NOT NULL,
    added_at REAL NOT NULL
)
"""


class ExampleStore:
    """Append-only store of labelled examples; blocking, call it from a worker thread."""

    def __init__(self, path: Path, *, retention_s: float = 86_400.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)
        self._db.executescript(idempotency.SQLITE_SCHEMA)
        self._retention_s = retention_s

    def add(
        self,
        examples: Sequence[Example],
        key: RequestKey | None = None,
        outcome: Callable[[int], str] = str,
    ) -> int:
        """Store ``examples`` in one committed transaction; returns the new total. With
        a ``key``, ``outcome(total)`` is recorded under it in the same transaction."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO examples (text, intent, added_at) VALUES (?, ?, ?)",
                    [(e.text, e.intent, now) for e in examples],
                )
                total = self._count()
                if key is not None:
                    idempotency.sqlite_record(self._db, key, outcome(total), now, self._retention_s)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return total

    def replay(self, key: RequestKey) -> str | None:
        """The outcome recorded under ``key`` (raises when it names another request)."""
        with self._lock:
            return idempotency.sqlite_replay(self._db, key, time.time())

    def all(self) -> list[Example]:
        with self._lock:
            rows = self._db.execute("SELECT text, intent FROM examples ORDER BY id").fetchall()
        return [Example(text, intent) for text, intent in rows]

    def count(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM examples").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
