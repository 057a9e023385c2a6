"""The SQLite backend's in-memory mirror of session memory, and the knowledge index,
answer what SQL answers: after appends with evictions, clears, ingests, re-ingests,
deletes, LRU evictions, a failed write, a write whose outcome was reported as failed
although it committed, and a write whose caller gave up. The reference is a store
with the mirror off (every read is SQL) opened on the same file, with an index
rebuilt from its document log."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client import CollectorRegistry

from switchboard_server.context.cache import ResultCache
from switchboard_server.context.domain import ContextService
from switchboard_server.context.metrics import ContextMetrics
from switchboard_server.context.store.group_commit import GroupCommitWriter
from switchboard_server.context.store.sqlite import SqliteStore
from switchboard_server.context.tantivy_index import TantivyIndex
from switchboard_server.context.values import (
    ALL_MEMORY_TYPES,
    ContextQuery,
    Document,
    MemoryType,
    NewMemory,
    Source,
)

CAPS = {MemoryType.WORKING: 3, MemoryType.EPISODIC: 5, MemoryType.SEMANTIC: 8}
WORDS = [f"w{i}" for i in range(30)]
SESSIONS = [f"s{i}" for i in range(6)]
TYPE_SETS = [ALL_MEMORY_TYPES, (MemoryType.WORKING,), (MemoryType.EPISODIC, MemoryType.SEMANTIC)]


class Opened(NamedTuple):
    store: SqliteStore
    knowledge: TantivyIndex


@contextlib.asynccontextmanager
async def opened(path: Path, memory_entries: int = 100_000) -> AsyncIterator[Opened]:
    """The store on ``path`` and a new knowledge index (built from its log)."""
    store = SqliteStore(path, CAPS, memory_entries=memory_entries)
    await store.open()
    index = TantivyIndex(path.parent / f"index-{uuid.uuid4().hex[:8]}", store)
    try:
        await index.open()
        yield Opened(store, index)
    finally:
        await index.close()
        await store.close()


def service(kb: Opened) -> ContextService:
    return ContextService(
        kb.store,
        kb.knowledge,
        ResultCache(0, 0),
        ContextMetrics(CollectorRegistry()),
        caps=CAPS,
        passage_max_chars=200,
    )


def entries(rng: random.Random, count: int) -> list[NewMemory]:
    return [
        NewMemory(
            rng.choice(ALL_MEMORY_TYPES),
            " ".join(rng.choices(WORDS, k=rng.randint(1, 8))),
            {"turn": str(rng.randint(0, 99))} if rng.random() < 0.3 else {},
        )
        for _ in range(count)
    ]


def documents(ids: range, seed: int) -> list[Document]:
    rng = random.Random(seed)
    return [
        Document(
            f"doc-{d}",
            f"title {d} {seed}",
            " ".join(rng.choices(WORDS, k=rng.randint(5, 60))),
            {"seed": str(seed)} if d % 2 else {},
        )
        for d in ids
    ]


def queries(seed: int) -> list[ContextQuery]:
    rng = random.Random(seed)
    return [
        ContextQuery(
            query=" ".join(rng.choices(WORDS, k=rng.randint(1, 5))),
            session_id=rng.choice(SESSIONS),
            memory_types=rng.choice(TYPE_SETS),
            max_results=rng.choice([3, 8, 20]),
            include_knowledge_base=False,  # the index's matches are compared in state()
            max_context_chars=rng.choice([300, 4000]),
        )
        for _ in range(40)
    ]


async def state(kb: Opened, seed: int = 5) -> list[Any]:
    """Every session's memory by type set, and GetContext answers (sources with their
    relevance, block, stats)."""
    found: list[Any] = []
    store = kb.store
    for session in SESSIONS:
        for types in TYPE_SETS:
            found.append(await store.list_memory(session, types))
        found.append(dict(await store.memory_counts(session)))
    for query in queries(seed):
        found.append(await service(kb).get_context(query))
        # the passages the index matches (not their scores: an index written in steps
        # counts replaced passages in BM25's statistics until a merge drops them)
        matched = await kb.knowledge.search(query.query, 1000)
        found.append(sorted(p.passage_id for p in matched))
    return found


async def by_sql(path: Path) -> list[Any]:
    async with opened(path, memory_entries=0) as kb:
        return await state(kb)


async def test_mirrors_answer_what_sql_answers(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    rng = random.Random(1)
    # a small mirror: sessions are evicted from it and read again
    async with opened(path, memory_entries=30) as kb:
        ctx = service(kb)
        await ctx.ingest(documents(range(20), seed=1))
        assert await state(kb) == await by_sql(path)
        for step in range(12):
            session = rng.choice(SESSIONS)
            await asyncio.gather(  # several writes in one group commit
                *(ctx.append_memory(rng.choice(SESSIONS), entries(rng, rng.randint(1, 6)))
                  for _ in range(3)),
                ctx.append_memory(session, entries(rng, 12)),  # over the caps: evicts
            )  # fmt: skip
            if step % 4 == 1:
                await ctx.clear_memory(session, rng.choice([(), (MemoryType.WORKING,)]))
            if step % 4 == 2:
                await ctx.ingest(documents(range(step, step + 6), seed=step))  # re-ingest
            if step % 4 == 3:
                await ctx.delete_documents([f"doc-{step}", f"doc-{step + 1}", "doc-none"])
            assert await state(kb) == await by_sql(path)


async def test_a_new_session_is_mirrored_from_its_first_append(tmp_path: Path) -> None:
    async with opened(tmp_path / "ctx.sqlite3") as kb:
        store = kb.store
        await service(kb).append_memory("fresh", [NewMemory(MemoryType.WORKING, "w1 w2")])
        held = store._memory.get("fresh")
        assert held is not None
        assert [r.content for r in held] == ["w1 w2"]
        await service(kb).append_memory("fresh", [NewMemory(MemoryType.WORKING, "w3")])
        assert [r.content for r in store._memory.get("fresh") or []] == ["w1 w2", "w3"]


async def test_reingested_passages_show_their_new_rows(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    async with opened(path) as kb:
        ctx = service(kb)

        async def hits() -> list[Source]:
            query = ContextQuery("w1", "", ALL_MEMORY_TYPES, 5, True, 4000)
            return list((await ctx.get_context(query)).sources)

        await ctx.ingest([Document("d", "old", "w1 w2", {"v": "1"})])
        (before,) = await hits()
        await ctx.ingest([Document("d", "new", "w1 w3", {"v": "2"})])
        (after,) = await hits()
        assert (before.title, before.metadata) == ("old", {"v": "1"})
        assert (after.title, after.content, after.metadata) == ("new", "w1 w3", {"v": "2"})
        assert after.created_at >= before.created_at
        await ctx.delete_documents(["d"])
        assert await hits() == []


@pytest.mark.parametrize("committed", [False, True])
async def test_a_failed_write_leaves_no_stale_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """The COMMIT fails (nothing written) or is reported failed after it committed
    (outcome unknown to the store): either way the mirrors show what the file holds."""
    path = tmp_path / "ctx.sqlite3"
    rng = random.Random(2)
    async with opened(path) as kb:
        ctx = service(kb)
        await ctx.ingest(documents(range(10), seed=1))
        for session in SESSIONS:
            await ctx.append_memory(session, entries(rng, 5))
        await state(kb)  # every session and the passages found are mirrored now
        original = GroupCommitWriter._commit

        def failing_commit(self: GroupCommitWriter) -> None:
            if committed:
                original(self)
            else:
                self._rollback()
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(GroupCommitWriter, "_commit", failing_commit)
        with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
            await ctx.append_memory(SESSIONS[0], entries(rng, 4))
        with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
            await ctx.clear_memory(SESSIONS[1], ())
        with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
            await ctx.ingest(documents(range(3, 8), seed=9))
        monkeypatch.undo()
        assert await state(kb) == await by_sql(path)


async def test_a_write_whose_caller_gave_up_is_mirrored(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite3"
    async with opened(path) as kb:
        ctx = service(kb)
        store = kb.store
        await ctx.append_memory("s0", [NewMemory(MemoryType.WORKING, "w1")])
        await state(kb)
        before = await store.generations("s0")
        append = asyncio.create_task(ctx.append_memory("s0", [NewMemory(MemoryType.WORKING, "w2")]))
        await asyncio.sleep(0)  # queued for the writer
        append.cancel()  # e.g. the client's deadline ran out: the write still commits
        with pytest.raises(asyncio.CancelledError):
            await append
        await ctx.append_memory("s1", [NewMemory(MemoryType.WORKING, "w3")])  # after it
        assert [r.content for r in await store.list_memory("s0", ALL_MEMORY_TYPES)] == [
            "w1",
            "w2",
        ]
        assert (await store.generations("s0")).session > before.session  # cache sees it
        assert await state(kb) == await by_sql(path)
