"""Idempotency keys (AIP-155 ``request_id``) in domain terms: no gRPC, no protobuf.

A write RPC may carry a key. The servicer turns it into a :class:`RequestKey`: the
key and a hash of the request with the key cleared. The store that does the write
records the outcome under the key **in the same transaction as the write**, for a
retention window; a repeat finds it and returns it without writing again, and the
same key with another request hash is refused (:func:`reused`). Stores built on
SQLite share the table and the two statements below; the Redis context store does
the same inside its Lua scripts.

Concurrent duplicates: a store's check and record run in one transaction (SQLite:
one writer, so the second sees the first's row; Redis: one atomic script), so a
key's write happens once whatever the interleaving. :class:`KeyedGate` also lets
only one call per key of a process do the work (the chat pipeline does much
before its commit; a duplicate waits and then finds the committed outcome).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from switchboard_server.errors import AlreadyExists, ErrorReason

PURGE_BATCH = 100
"""Expired outcomes deleted per recorded write: purging keeps up with any write rate
(each write adds one row and removes up to this many)."""


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A request's idempotency key and the hash of the request without it."""

    request_id: str
    request_hash: str

    def derived_id(self, purpose: str) -> str:
        """The request_id of a write this request makes elsewhere (e.g. ``memory``): the
        same for every repeat of this request, different for every other request."""
        return str(uuid.uuid5(uuid.UUID(self.request_id), purpose))


def reused(key: RequestKey) -> AlreadyExists:
    """The error for a key that came back with a different request."""
    return AlreadyExists(
        "request_id was already used for a different request",
        reason=ErrorReason.REQUEST_ID_REUSED,
        metadata={"request_id": key.request_id},
    )


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS request_outcomes (
    request_id   TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS request_outcomes_expiry ON request_outcomes (expires_at);
"""


def sqlite_replay(conn: sqlite3.Connection, key: RequestKey, now: float) -> str | None:
    """The outcome recorded under ``key`` and not expired, else None; raises the
    :func:`reused` error when the key was recorded for another request."""
    row = conn.execute(
        "SELECT request_hash, outcome FROM request_outcomes"
        " WHERE request_id = ? AND expires_at > ?",
        (key.request_id, now),
    ).fetchone()
    if row is None:
        return None
    if row[0] != key.request_hash:
        raise reused(key)
    return str(row[1])


def sqlite_record(
    conn: sqlite3.Connection, key: RequestKey, outcome: str, now: float, retention_s: float
) -> None:
    """Record ``outcome`` under ``key`` (inside the write's transaction) and purge up to
    :data:`PURGE_BATCH` expired outcomes (and this key's, if expired). A key recorded
    and not expired makes the INSERT fail (``sqlite3.IntegrityError``), which rolls
    the write back with it: the table's uniqueness is the last guard against a double."""
    conn.execute(
        "DELETE FROM request_outcomes WHERE request_id IN (SELECT request_id FROM"
        " request_outcomes WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
        " OR (request_id = ? AND expires_at <= ?)",
        (now, PURGE_BATCH, key.request_id, now),
    )
    conn.execute(
        "INSERT INTO request_outcomes (request_id, request_hash, outcome, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (key.request_id, key.request_hash, outcome, now + retention_s),
    )


class KeyedGate:
    """At most one holder per key in this process; others wait their turn.

    Entries live only while someone holds or waits for the key, so the table is
    bounded by the calls in flight.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
