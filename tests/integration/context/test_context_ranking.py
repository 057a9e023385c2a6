"""Ranking on a small labelled set (ranking_cases.yaml), on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.context.v1 import context_service_pb2 as pb
from tests.support.context import Running, running

CASES = yaml.safe_load((Path(__file__).parent / "ranking_cases.yaml").read_text())
TYPES = {"working": pb.MEMORY_TYPE_WORKING, "semantic": pb.MEMORY_TYPE_SEMANTIC}


@pytest.fixture
async def loaded(ctx: Running) -> Running:
    await ctx.stub.IngestDocuments(
        pb.IngestDocumentsRequest(documents=[pb.Document(**d) for d in CASES["documents"]])
    )
    memory = CASES["memory"]
    await ctx.stub.AppendMemory(
        pb.AppendMemoryRequest(
            session_id=memory["session"],
            entries=[
                pb.MemoryEntry(type=TYPES[e["type"]], content=e["content"])
                for e in memory["entries"]
            ],
        )
    )
    return ctx


async def test_obviously_relevant_passage_ranks_first(loaded: Running) -> None:
    misses = []
    for case in CASES["queries"]:
        reply = await loaded.stub.GetContext(
            pb.GetContextRequest(query=case["query"], include_knowledge_base=True, max_results=5)
        )
        top = reply.sources[0].document_id if reply.sources else None
        if top != case["expect"]:
            misses.append((case["query"], top, case["expect"]))
        assert all(0.0 <= s.relevance <= 1.0 for s in reply.sources)
        relevances = [s.relevance for s in reply.sources]
        assert relevances == sorted(relevances, reverse=True)
    assert misses == []


async def test_memory_and_knowledge_rank_together(loaded: Running) -> None:
    memory = CASES["memory"]
    for case in memory["queries"]:
        reply = await loaded.stub.GetContext(
            pb.GetContextRequest(
                query=case["query"], session_id=memory["session"], include_knowledge_base=True
            )
        )
        assert reply.sources[0].content == case["expect"]
        assert reply.sources[0].kind == pb.SOURCE_KIND_MEMORY
        assert reply.memory_stats.semantic_count == 2


async def test_max_results_and_budget_are_honoured(loaded: Running) -> None:
    wide = await loaded.stub.GetContext(
        pb.GetContextRequest(
            query="switchboard service envoy", include_knowledge_base=True, max_results=3
        )
    )
    narrow = await loaded.stub.GetContext(
        pb.GetContextRequest(
            query="switchboard service envoy", include_knowledge_base=True, max_results=3,
            max_context_chars=200,
        )
    )  # fmt: skip
    assert len(wide.sources) == 3
    assert all(s.content in wide.context for s in wide.sources)
    assert 0 < len(narrow.context) <= 200
    assert len(narrow.sources) >= 1


async def test_recency_breaks_ties_in_memory(ctx: Running, make_settings: Any) -> None:
    for word in ("alpha", "beta", "gamma"):
        await ctx.stub.AppendMemory(
            pb.AppendMemoryRequest(
                session_id="s-tie",
                entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_EPISODIC, content=f"topic {word}")],
            )
        )
    reply = await ctx.stub.GetContext(pb.GetContextRequest(query="topic", session_id="s-tie"))
    assert [s.content for s in reply.sources] == ["topic gamma", "topic beta", "topic alpha"]


async def test_reader_threads_answer_like_inline_reads(make_settings: Any) -> None:
    """SQLITE_READERS > 0 moves reads to threads; answers are the same (Redis ignores it)."""
    request = pb.GetContextRequest(
        query="how does switchboard retry failed calls?", include_knowledge_base=True
    )
    async with running(make_settings(sqlite_readers=0)) as inline:
        expected = await inline.stub.GetContext(request)
    async with running(make_settings(sqlite_readers=2)) as threaded:
        replies = await asyncio.gather(*(threaded.stub.GetContext(request) for _ in range(20)))
    assert expected.sources[0].document_id == "retries"
    assert all(list(r.sources) == list(expected.sources) for r in replies)
