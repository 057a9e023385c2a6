"""GroupCommitWriter: batches commit once, a failing write rolls back alone, and a
write is visible to another connection (committed) when ``submit`` returns."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from switchboard_server.context.store.group_commit import GroupCommitWriter
from switchboard_server.context.store.writer_thread import WriterThread


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[tuple[GroupCommitWriter, Path]]:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
    thread = WriterThread("test-writer")
    writer = GroupCommitWriter(conn, thread)
    yield writer, path
    await writer.wait_idle()
    conn.close()
    thread.close()


def insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def write(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value

    return write


def committed(path: Path) -> list[int]:
    with sqlite3.connect(path) as other:
        return [v for (v,) in other.execute("SELECT v FROM t ORDER BY v")]


@pytest.mark.parametrize("inline", [True, False])
async def test_failing_write_rolls_back_alone(
    writer: tuple[GroupCommitWriter, Path], inline: bool
) -> None:
    w, path = writer
    results = await asyncio.gather(
        w.submit(insert(1), inline=inline),
        w.submit(insert(1), inline=inline),  # duplicate key
        w.submit(insert(2), inline=inline),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert results[2] == 2
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert committed(path) == [1, 2]


async def test_mixed_batch_commits_every_write_before_answering(
    writer: tuple[GroupCommitWriter, Path],
) -> None:
    w, path = writer
    seen: dict[int, list[int]] = {}

    async def write_then_look(value: int, inline: bool) -> None:
        await w.submit(insert(value), inline=inline)
        seen[value] = committed(path)

    await asyncio.gather(*(write_then_look(v, v % 3 != 0) for v in range(20)))
    assert committed(path) == list(range(20))
    assert all(value in rows for value, rows in seen.items())


@pytest.mark.parametrize("inline", [True, False])
async def test_a_write_alone_in_its_batch_fails_alone(
    writer: tuple[GroupCommitWriter, Path], inline: bool
) -> None:
    """A batch of one write runs without a savepoint: when it fails, its transaction
    is rolled back and the next write commits in a transaction of its own."""
    w, path = writer
    await w.submit(insert(1), inline=inline)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (2)")
        conn.execute("INSERT INTO t (v) VALUES (1)")  # duplicate key

    with pytest.raises(sqlite3.IntegrityError):
        await w.submit(half_then_fail, inline=inline)
    assert await w.submit(insert(3), inline=inline) == 3
    assert committed(path) == [1, 3]


async def test_writes_arriving_over_a_few_loop_rounds_share_one_transaction(
    writer: tuple[GroupCommitWriter, Path],
) -> None:
    """Writes of RPCs a few event-loop rounds apart (as concurrent requests reach the
    store) are gathered into one batch: one BEGIN, one COMMIT for all of them."""
    w, path = writer
    statements: list[str] = []
    w._connection.set_trace_callback(statements.append)

    async def arrive_then_write(value: int) -> int:
        for _ in range(value):  # the RPC's own awaits before it reaches the store
            await asyncio.sleep(0)
        return await w.submit(insert(value), inline=True)

    assert await asyncio.gather(*(arrive_then_write(v) for v in range(4))) == [0, 1, 2, 3]
    assert committed(path) == [0, 1, 2, 3]
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1


async def test_large_writes_commit_one_per_transaction(
    writer: tuple[GroupCommitWriter, Path],
) -> None:
    """Two ingests queued together commit in turn, the first answered once its own
    transaction committed (its caller indexes it while the second is written); the
    small writes between them still share the first one's transaction."""
    w, path = writer
    statements: list[str] = []
    w._connection.set_trace_callback(statements.append)
    seen: dict[int, list[int]] = {}

    async def write_then_look(value: int, inline: bool) -> None:
        await w.submit(insert(value), inline=inline)
        seen[value] = committed(path)

    await asyncio.gather(
        write_then_look(1, False), write_then_look(2, True), write_then_look(3, False)
    )
    assert committed(path) == [1, 2, 3]
    assert statements.count("COMMIT") == 2
    assert seen[1] == [1, 2]  # answered before the second ingest was written
    assert seen[3] == [1, 2, 3]
