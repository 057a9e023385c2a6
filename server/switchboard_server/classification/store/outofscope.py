"""Out-of-scope messages kept for intent discovery (``switchboard discover``), in SQLite.

Opt-in (``SWITCHBOARD_CLASSIFICATION_DISCOVERY_ENABLED``). Retention is bounded twice:
every write first drops messages older than ``max_age_s``, then the oldest beyond
``max_messages``. Session ids are never stored: only an HMAC-SHA256 of them under a
salt (``salt.py``), enough to count distinct sessions of a cluster and nothing more.
Losing a message is harmless, so writes use ``synchronous=NORMAL``.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.store.salt import load_or_create_salt

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    session_hash TEXT NOT NULL,
    confidence REAL NOT NULL,
    best_guess TEXT NOT NULL,
    model_version TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_received_at ON messages (received_at);
"""
SESSION_HASH_HEX = 32
STORE_FILE = "discovery.sqlite3"
SALT_FILE = "discovery.salt"


@dataclass(frozen=True, slots=True)
class OutOfScopeMessage:
    """One message the classifier answered out of scope (``session_id`` still raw)."""

    text: str
    session_id: str
    confidence: float
    best_guess: str
    model_version: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A kept message as ``switchboard discover`` reads it."""

    text: str
    session_hash: str
    confidence: float
    best_guess: str
    model_version: str
    received_at: float


def hash_session(salt: bytes, session_id: str) -> str:
    """HMAC-SHA256 of ``session_id`` under ``salt`` (hex, truncated); empty stays empty."""
    if not session_id:
        return ""
    digest = hmac.new(salt, session_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:SESSION_HASH_HEX]


class OutOfScopeStore:
    """Bounded store of out-of-scope messages; blocking, call it from a worker thread."""

    def __init__(
        self,
        path: Path,
        *,
        salt: bytes,
        max_messages: int,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(salt) < 16:
            raise ValueError("the session-hash salt must be at least 16 bytes")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._salt = salt
        self._max_messages = max_messages
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def add(self, messages: Sequence[OutOfScopeMessage]) -> int:
        """Keep ``messages`` (session ids hashed), apply both bounds; returns the count kept."""
        now = self._clock()
        rows = [
            (
                m.text,
                hash_session(self._salt, m.session_id),
                float(m.confidence),
                m.best_guess,
                m.model_version,
                now,
            )
            for m in messages
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO messages (text, session_hash, confidence, best_guess,"
                    " model_version, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._prune(now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._count()

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM messages WHERE received_at < ?", (now - self._max_age_s,))
        # ids only grow, so the newest max_messages rows are those above max(id) - N:
        # a range delete on the primary key, not a scan of the table
        self._db.execute(
            "DELETE FROM messages WHERE id <= (SELECT MAX(id) FROM messages) - ?",
            (self._max_messages,),
        )

    def all(self) -> list[StoredMessage]:
        """Every kept message not yet past its age, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT text, session_hash, confidence, best_guess, model_version, received_at"
                " FROM messages WHERE received_at >= ? ORDER BY id",
                (self._clock() - self._max_age_s,),
            ).fetchall()
        return [StoredMessage(*row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_discovery_store(settings: ClassificationSettings, data_dir: Path) -> OutOfScopeStore:
    """The service's store of out-of-scope messages, with its salt and bounds."""
    salt = load_or_create_salt(settings.discovery_salt_file or data_dir / SALT_FILE)
    return OutOfScopeStore(
        data_dir / STORE_FILE,
        salt=salt,
        max_messages=settings.discovery_max_messages,
        max_age_s=settings.discovery_max_age_s,
    )
