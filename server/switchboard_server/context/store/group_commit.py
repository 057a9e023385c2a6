"""Group commit for SQLite: concurrent writes share one transaction and one fsync.

Each write is a function of the connection run inside its own SAVEPOINT, so a
failing write rolls back alone; the batch commits once and only then are the
callers answered. Every acknowledged write is therefore committed (durable with
``synchronous=FULL``), while throughput is not bounded by one fsync per write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]


class GroupCommitWriter:
    """Serialises writes on one connection (owned by one thread) in batches."""

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._connection = connection
        self._executor = executor
        self._pending: list[tuple[Write, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``write`` in a transaction; returns once that transaction committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def wait_idle(self) -> None:
        """Wait for queued writes to finish (used on close)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            writes = [write for write, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run, writes)
            except BaseException as exc:
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _run(self, writes: list[Write]) -> list[Any]:
        conn = self._connection
        outcomes: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                conn.execute("SAVEPOINT write")
                try:
                    outcomes.append(write(conn))
                except Exception as exc:
                    conn.execute("ROLLBACK TO write")
                    outcomes.append(exc)
                conn.execute("RELEASE write")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes
