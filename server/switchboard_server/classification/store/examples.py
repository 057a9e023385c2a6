"""Run-time examples in SQLite: durable (WAL, synchronous=FULL) before AddExamples returns."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from switchboard_server.classification.dataset import Example

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

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def add(self, examples: Sequence[Example]) -> int:
        """Store ``examples`` in one committed transaction; returns the new total."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO examples (text, intent, added_at) VALUES (?, ?, ?)",
                    [(e.text, e.intent, now) for e in examples],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._count()

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
