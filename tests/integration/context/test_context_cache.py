"""The result cache never serves a stale context (both backends, and across replicas)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from switchboard.context.v1 import context_service_pb2 as pb
from tests.support.context import Running, running, seconds_until_found

QUESTION = "what colour is the submarine"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def ask(ctx: Running, session: str = "s-cache") -> pb.GetContextResponse:
    return await ctx.stub.GetContext(
        pb.GetContextRequest(query=QUESTION, session_id=session, include_knowledge_base=True)
    )


async def append(ctx: Running, content: str, session: str = "s-cache") -> None:
    await ctx.stub.AppendMemory(
        pb.AppendMemoryRequest(
            session_id=session,
            entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_SEMANTIC, content=content)],
        )
    )


async def test_append_clear_ingest_delete_invalidate(ctx: Running) -> None:
    registry = ctx.server.runtime.metrics
    first = await ask(ctx)
    second = await ask(ctx)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert sample(registry, "context_cache_requests_total", result="hit") == 1
    assert sample(registry, "context_cache_requests_total", result="miss") == 1
    assert sample(registry, "context_retrieval_seconds_count", cache="hit") == 1

    await append(ctx, "the submarine is yellow")
    after_append = await ask(ctx)
    assert not after_append.cache_hit
    assert [s.content for s in after_append.sources] == ["the submarine is yellow"]
    assert after_append.memory_stats.semantic_count == 1

    await ctx.stub.ClearMemory(pb.ClearMemoryRequest(session_id="s-cache"))
    after_clear = await ask(ctx)
    assert not after_clear.cache_hit
    assert list(after_clear.sources) == []

    await ctx.stub.IngestDocuments(
        pb.IngestDocumentsRequest(
            documents=[pb.Document(id="sub", title="Submarines", text="Our submarine is red.")]
        )
    )
    after_ingest = await ask(ctx)
    assert [s.document_id for s in after_ingest.sources] == ["sub"]

    await ctx.stub.IngestDocuments(
        pb.IngestDocumentsRequest(
            documents=[pb.Document(id="sub", title="Submarines", text="Our submarine is blue.")]
        )
    )
    after_replace = await ask(ctx)
    assert [s.content for s in after_replace.sources] == ["Our submarine is blue."]

    await ctx.stub.DeleteDocuments(pb.DeleteDocumentsRequest(document_ids=["sub"]))
    after_delete = await ask(ctx)
    assert list(after_delete.sources) == []
    assert sample(registry, "context_cache_requests_total", result="hit") == 1


async def test_warmup_precomputes(ctx: Running) -> None:
    request = pb.GetContextRequest(query="how are health checks done", include_knowledge_base=True)
    warmed = await ctx.stub.WarmupCache(pb.WarmupCacheRequest(queries=[request]))
    reply = await ctx.stub.GetContext(request)
    assert warmed.warmed_count == 1
    assert reply.cache_hit
    assert reply.sources[0].document_id == "health-checks"


async def test_other_session_write_keeps_cache(ctx: Running) -> None:
    await ask(ctx, "s-one")
    await append(ctx, "a submarine elsewhere", session="s-two")
    assert (await ask(ctx, "s-one")).cache_hit


async def test_no_stale_read_across_replicas(make_settings: Any, store_kind: str) -> None:
    """Two context servers on one store: a memory write on one is seen at once on the
    other; a knowledge write within the index bound (poll interval plus a commit).

    Only Redis supports replicas; with SQLite one process owns the file, so this
    runs for Redis only (the parametrised SQLite case checks the single replica).
    """
    if store_kind == "sqlite":
        async with running(make_settings()) as only:
            await ask(only)
            await append(only, "the submarine is yellow")
            assert (await ask(only)).sources[0].content == "the submarine is yellow"
        return
    poll = 0.2
    async with (
        running(make_settings(index_poll_interval_s=poll)) as a,
        running(make_settings(index_poll_interval_s=poll)) as b,
    ):
        await ask(b)
        assert (await ask(b)).cache_hit
        await append(a, "the submarine is yellow")
        seen = await ask(b)
        assert not seen.cache_hit
        assert [s.content for s in seen.sources] == ["the submarine is yellow"]
        await b.stub.IngestDocuments(
            pb.IngestDocumentsRequest(documents=[pb.Document(id="sub", text="a red submarine")])
        )
        # within one poll interval and a commit (1 s of slack for a loaded machine)
        await seconds_until_found(a, "submarine", "sub", within_s=poll + 1.0)
        assert {s.document_id for s in (await ask(a)).sources} == {"sub", ""}
