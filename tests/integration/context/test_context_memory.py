"""Session memory over gRPC, on both backends: caps, eviction order, clear, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from switchboard.context.v1 import context_service_pb2 as pb
from tests.support.context import Running, running

WORKING, EPISODIC, SEMANTIC = (
    pb.MEMORY_TYPE_WORKING,
    pb.MEMORY_TYPE_EPISODIC,
    pb.MEMORY_TYPE_SEMANTIC,
)


def entry(kind: pb.MemoryType.ValueType, content: str, **metadata: str) -> pb.MemoryEntry:
    return pb.MemoryEntry(type=kind, content=content, metadata=metadata)


async def memory_contents(
    ctx: Running, session: str, query: str, kind: pb.MemoryType.ValueType
) -> list[str]:
    """Every entry of one type that matches ``query``, best (then newest) first."""
    response = await ctx.stub.GetContext(
        pb.GetContextRequest(
            query=query, session_id=session, memory_types=[kind], max_results=50,
            max_context_chars=65_536,
        )
    )  # fmt: skip
    return [s.content for s in response.sources]


async def test_oldest_entry_of_a_type_is_evicted_over_its_cap(make_settings: Any) -> None:
    async with running(make_settings(working_cap=3, episodic_cap=2)) as ctx:
        evicted = 0
        for i in range(5):
            reply = await ctx.stub.AppendMemory(
                pb.AppendMemoryRequest(session_id="s-evict", entries=[entry(WORKING, f"turn {i}")])
            )
            evicted += reply.evicted_count
        await ctx.stub.AppendMemory(
            pb.AppendMemoryRequest(
                session_id="s-evict",
                entries=[entry(EPISODIC, f"exchange {i}") for i in range(4)]
                + [entry(SEMANTIC, "fact turn")],
            )
        )
        stats = (
            await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="s-evict"))
        ).memory_stats

        assert evicted == 2
        assert (stats.working_count, stats.episodic_count, stats.semantic_count) == (3, 2, 1)
        assert (stats.working_capacity, stats.episodic_capacity) == (3, 2)
        assert stats.semantic_capacity == 100
        # Equal relevance: the newest first; turns 0 and 1 were evicted, not the others.
        assert await memory_contents(ctx, "s-evict", "turn", WORKING) == [
            "turn 4", "turn 3", "turn 2",
        ]  # fmt: skip
        assert await memory_contents(ctx, "s-evict", "exchange", EPISODIC) == [
            "exchange 3", "exchange 2",
        ]  # fmt: skip
        # Eviction is per type: the semantic fact survived the working/episodic churn.
        assert await memory_contents(ctx, "s-evict", "fact", SEMANTIC) == ["fact turn"]


async def test_append_returns_ids_and_stats_of_that_session_only(ctx: Running) -> None:
    reply = await ctx.stub.AppendMemory(
        pb.AppendMemoryRequest(
            session_id="s-a", entries=[entry(WORKING, "hello"), entry(SEMANTIC, "likes tea")]
        )
    )
    other = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="s-b"))

    assert len(reply.entry_ids) == 2
    assert len(set(reply.entry_ids)) == 2
    assert reply.memory_stats.working_count == 1
    assert reply.memory_stats.semantic_count == 1
    assert reply.evicted_count == 0
    assert other.memory_stats.working_count == other.memory_stats.semantic_count == 0
    assert other.memory_stats.working_capacity == 10


async def test_clear_by_type_and_all(ctx: Running) -> None:
    session = "s-clear"
    await ctx.stub.AppendMemory(
        pb.AppendMemoryRequest(
            session_id=session,
            entries=[entry(WORKING, "w1"), entry(WORKING, "w2"), entry(EPISODIC, "e1"),
                     entry(SEMANTIC, "s1")],
        )
    )  # fmt: skip
    only_working = await ctx.stub.ClearMemory(
        pb.ClearMemoryRequest(session_id=session, memory_types=[WORKING])
    )
    after_type = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id=session))
    rest = await ctx.stub.ClearMemory(pb.ClearMemoryRequest(session_id=session))
    after_all = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id=session))

    assert only_working.deleted_count == 2
    assert after_type.memory_stats.working_count == 0
    assert after_type.memory_stats.episodic_count == 1
    assert after_type.memory_stats.semantic_count == 1
    assert rest.deleted_count == 2
    stats = after_all.memory_stats
    assert stats.working_count == stats.episodic_count == stats.semantic_count == 0


async def test_concurrent_appends_to_one_session_lose_nothing(ctx: Running) -> None:
    session = "s-concurrent"

    async def append(i: int, kind: pb.MemoryType.ValueType) -> pb.AppendMemoryResponse:
        return await ctx.stub.AppendMemory(
            pb.AppendMemoryRequest(session_id=session, entries=[entry(kind, f"fact{i} item")])
        )

    semantic = await asyncio.gather(*(append(i, SEMANTIC) for i in range(80)))
    working = await asyncio.gather(*(append(i, WORKING) for i in range(40)))
    stats = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id=session))
    ids = [i for reply in (*semantic, *working) for i in reply.entry_ids]

    assert len(set(ids)) == 120
    assert stats.memory_stats.semantic_count == 80  # under the cap of 100: all kept
    assert stats.memory_stats.working_count == 10  # cap 10: exactly 30 evicted in total
    assert sum(r.evicted_count for r in working) == 30
    assert sum(r.evicted_count for r in semantic) == 0
    found = await asyncio.gather(
        *(memory_contents(ctx, session, f"fact{i}", SEMANTIC) for i in range(80))
    )
    assert found == [[f"fact{i} item"] for i in range(80)]
