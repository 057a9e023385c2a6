"""Domain metrics move as a user would expect (bounded labels, no session ids)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from switchboard.context.v1 import context_service_pb2 as pb
from tests.support.context import Running, running


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_memory_and_knowledge_metrics(ctx: Running) -> None:
    registry = ctx.server.runtime.metrics
    assert value(registry, "context_knowledge_documents") == 15  # the built-in knowledge base
    passages_before = value(registry, "context_knowledge_passages")

    for i in range(12):
        await ctx.stub.AppendMemory(
            pb.AppendMemoryRequest(
                session_id="secret-session-7",
                entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_WORKING, content=f"turn {i}")],
            )
        )
    await ctx.stub.IngestDocuments(
        pb.IngestDocumentsRequest(documents=[pb.Document(id="extra", text="one more passage")])
    )

    assert value(registry, "context_memory_appended_total", memory_type="working") == 12
    assert value(registry, "context_memory_evicted_total", memory_type="working") == 2
    assert value(registry, "context_memory_evicted_total", memory_type="semantic") == 0
    assert value(registry, "context_session_memory_entries_count", memory_type="working") == 12
    # Sizes after each append: 1..10, then 10, 10 (evicting); five of them are <= 5.
    assert (
        value(registry, "context_session_memory_entries_bucket", memory_type="working", le="5.0")
        == 5
    )
    assert value(registry, "context_knowledge_documents") == 16
    assert value(registry, "context_knowledge_passages") == passages_before + 1
    exposition = generate_latest(registry).decode()
    assert "secret-session-7" not in exposition
    assert "turn 1" not in exposition


async def test_knowledge_gauges_count_the_store_after_a_restart(make_settings: Any) -> None:
    """The gauges are set once the service is SERVING (counting a large knowledge base is
    not on the way to it), also when nothing is seeded or ingested after the start."""
    settings = make_settings(seed_default_knowledge=False)
    async with running(settings) as first:
        await first.stub.IngestDocuments(
            pb.IngestDocumentsRequest(
                documents=[pb.Document(id=f"d{i}", text=f"passage {i}") for i in range(3)]
            )
        )
    async with running(settings) as second:
        registry = second.server.runtime.metrics
        deadline = time.monotonic() + 5
        while value(registry, "context_knowledge_documents") != 3:
            assert time.monotonic() < deadline, "the gauges never counted the store"
            await asyncio.sleep(0.01)
        assert value(registry, "context_knowledge_passages") == 3
