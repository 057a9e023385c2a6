"""Group commit for SQLite: concurrent writes share one transaction and one fsync.

Each write is a function of the connection run inside its own SAVEPOINT (unless
it is alone in its batch: then the transaction is its savepoint), so a failing
write rolls back alone; the batch commits once and only then are the
callers answered. Every acknowledged write is therefore committed (durable with
``synchronous=FULL``), while throughput is not bounded by one fsync per write.

Small writes (``inline=True``: memory appends and clears, a few statements each)
run on the event loop and only the COMMIT, where SQLite writes the WAL and
fsyncs, goes to the writer thread: one thread hand-off per batch. Running each
statement on the writer thread instead cost a GIL hand-off per statement; with a
busy event loop (and busy cores) those hand-offs, not SQLite, set the pace. Large
writes (ingest, delete) run whole on the writer thread so they never stall the event
loop.

Before it takes a batch, the writer lets the event loop run ``GATHER_ROUNDS`` rounds,
so that writes of RPCs already on their way join it (like PostgreSQL's
``commit_delay``): with many appends in flight the batches grow, and BEGIN, COMMIT
and the thread hand-off are shared by more of them. A write on an idle loop only
waits those few empty rounds. Large writes are not gathered with one another: each
commits in its own transaction, so that with two ingests in flight the first one's
caller (indexing it) overlaps the second one's write.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from switchboard_server.context.store.writer_thread import WriterThread
from switchboard_server.errors import ResourceExhausted

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
GATHER_ROUNDS = 4


def disk_full_as_exhausted(exc: BaseException) -> BaseException:
    """SQLite's "database or disk is full" (SQLITE_FULL) as RESOURCE_EXHAUSTED, so a
    caller learns what ran out instead of INTERNAL; any other error as it is. The
    transaction was rolled back: nothing of the write is kept, and it may be retried
    once space is freed."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        error = ResourceExhausted("the context store's disk is full; retry once space is freed")
        error.__cause__ = exc
        return error
    return exc


class GroupCommitWriter:
    """Serialises writes on one connection in batches (one transaction per batch)."""

    def __init__(self, connection: sqlite3.Connection, thread: WriterThread) -> None:
        self._connection = connection
        self._thread = thread
        self._pending: list[tuple[Write, bool, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, write: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run ``write`` in a transaction; returns once that transaction committed.

        ``inline`` writes must be short: their statements run on the event loop.
        """
        return await asyncio.shield(self.enqueue(write, inline=inline))

    def enqueue(
        self, write: Callable[[sqlite3.Connection], T], *, inline: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``write``; the future resolves once its transaction committed (or with
        the write's error), whether or not anyone still awaits it: a caller that must
        follow the outcome (e.g. a mirror of the table) adds a done callback, then
        awaits it shielded."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((write, inline, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return future

    async def wait_idle(self) -> None:
        """Wait for queued writes to finish (used on close)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        while self._pending:
            for _ in range(GATHER_ROUNDS):
                await asyncio.sleep(0)
            batch = self._take()
            writes = [write for write, _, _ in batch]
            try:
                if all(inline for _, inline, _ in batch):
                    outcomes = self._apply(writes)
                    if self._connection.in_transaction:  # else its one write failed
                        await self._thread.run(self._commit)
                else:
                    outcomes = await self._thread.run(functools.partial(self._run, writes))
            except BaseException as exc:
                outcomes = [exc] * len(batch)
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(disk_full_as_exhausted(outcome))
                else:
                    future.set_result(outcome)

    def _take(self) -> list[tuple[Write, bool, asyncio.Future[Any]]]:
        """The next batch: every queued write up to the second large one, which waits
        for the next transaction. A large write (an ingest) is worth a transaction of
        its own: its caller can move on (e.g. have it indexed) while the next one is
        written, instead of both waiting for one commit and then for each other."""
        large = [n for n, (_, inline, _) in enumerate(self._pending) if not inline]
        end = large[1] if len(large) > 1 else len(self._pending)
        batch, self._pending = self._pending[:end], self._pending[end:]
        return batch

    def _run(self, writes: Sequence[Write]) -> list[Any]:
        outcomes = self._apply(writes)
        self._commit()
        return outcomes

    def _apply(self, writes: Sequence[Write]) -> list[Any]:
        """Open the batch's transaction and run each write in its own savepoint."""
        conn = self._connection
        conn.execute("BEGIN IMMEDIATE")
        if len(writes) == 1:  # alone in its transaction: no savepoint needed
            try:
                return [writes[0](conn)]
            except Exception as exc:
                self._rollback()
                return [exc]
            except BaseException:
                self._rollback()
                raise
        outcomes: list[Any] = []
        try:
            for write in writes:
                conn.execute("SAVEPOINT write")
                try:
                    outcomes.append(write(conn))
                except Exception as exc:
                    conn.execute("ROLLBACK TO write")
                    outcomes.append(exc)
                conn.execute("RELEASE write")
        except BaseException:
            self._rollback()
            raise
        return outcomes

    def _commit(self) -> None:
        if not self._connection.in_transaction:  # its one write failed and rolled back
            return
        try:
            self._connection.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")
