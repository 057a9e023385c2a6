"""Idempotency keys (AIP-155 request_id) on every context write, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import uuid
from typing import Any

import grpc
import pytest
import redis

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard_server.config import ServiceName, Settings
from tests.support.context import Running, running
from tests.support.rich_status import error_details

WORKING = pb.MEMORY_TYPE_WORKING


def key() -> str:
    return str(uuid.uuid4())


def append(session: str, *contents: str, request_id: str = "") -> pb.AppendMemoryRequest:
    return pb.AppendMemoryRequest(
        session_id=session,
        entries=[pb.MemoryEntry(type=WORKING, content=c) for c in contents],
        request_id=request_id,
    )


async def working_count(ctx: Running, session: str) -> int:
    stats = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id=session))
    return stats.memory_stats.working_count


async def expect_reused(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    assert failed.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info, _ = error_details(failed.value)
    assert info.reason == "REQUEST_ID_REUSED"


async def test_append_repeated_with_its_key_writes_once_and_answers_the_same(
    make_settings: Any,
) -> None:
    async with running(make_settings()) as ctx:
        request = append("s-idem", "my name is Ada", "I live in Paris", request_id=key())
        first = await ctx.stub.AppendMemory(request)
        again = await ctx.stub.AppendMemory(request)
        assert again == first
        assert list(again.entry_ids) == list(first.entry_ids)
        assert await working_count(ctx, "s-idem") == 2
        appended = ctx.server.runtime.metrics.get_sample_value(
            "context_memory_appended_total", {"memory_type": "working"}
        )
        assert appended == 2  # a replay is not counted as an append
        # without a key (or with a new one) the same body is a new write
        await ctx.stub.AppendMemory(append("s-idem", "my name is Ada", "I live in Paris"))
        assert await working_count(ctx, "s-idem") == 4


async def test_a_key_reused_with_another_body_is_refused(make_settings: Any) -> None:
    async with running(make_settings()) as ctx:
        request_id = key()
        await ctx.stub.AppendMemory(append("s-reuse", "first", request_id=request_id))
        await expect_reused(
            ctx.stub.AppendMemory(append("s-reuse", "second", request_id=request_id))
        )
        # the key is per request, not per method: another write with it is refused too
        await expect_reused(
            ctx.stub.ClearMemory(pb.ClearMemoryRequest(session_id="s-reuse", request_id=request_id))
        )
        assert await working_count(ctx, "s-reuse") == 1


async def test_concurrent_duplicates_resolve_once(make_settings: Any) -> None:
    async with running(make_settings()) as ctx:
        request = append("s-race", "only once", request_id=key())
        replies = await asyncio.gather(*(ctx.stub.AppendMemory(request) for _ in range(10)))
        assert len({tuple(r.entry_ids) for r in replies}) == 1
        assert await working_count(ctx, "s-race") == 1


async def test_clear_ingest_and_delete_repeat_their_first_outcome(make_settings: Any) -> None:
    async with running(make_settings()) as ctx:
        await ctx.stub.AppendMemory(append("s-clear", "a", "b"))
        clear = pb.ClearMemoryRequest(session_id="s-clear", request_id=key())
        assert (await ctx.stub.ClearMemory(clear)).deleted_count == 2
        await ctx.stub.AppendMemory(append("s-clear", "c"))
        assert (await ctx.stub.ClearMemory(clear)).deleted_count == 2  # replayed, not run
        assert await working_count(ctx, "s-clear") == 1

        doc = pb.Document(id="idem-doc", title="Idem", text="Idempotency keys make retries safe.")
        ingest = pb.IngestDocumentsRequest(documents=[doc], request_id=key())
        first = await ctx.stub.IngestDocuments(ingest)
        assert first.replaced_count == 0
        again = await ctx.stub.IngestDocuments(ingest)
        assert again == first  # a second run would have replaced the document
        await expect_reused(
            ctx.stub.IngestDocuments(
                pb.IngestDocumentsRequest(
                    documents=[pb.Document(id="idem-doc", text="other")],
                    request_id=ingest.request_id,
                )
            )
        )

        delete = pb.DeleteDocumentsRequest(document_ids=["idem-doc"], request_id=key())
        first_delete = await ctx.stub.DeleteDocuments(delete)
        assert (first_delete.deleted_count, list(first_delete.missing_ids)) == (1, [])
        again_delete = await ctx.stub.DeleteDocuments(delete)
        assert again_delete == first_delete  # a second run would report it missing
        fresh = await ctx.stub.DeleteDocuments(
            pb.DeleteDocumentsRequest(document_ids=["idem-doc"], request_id=key())
        )
        assert list(fresh.missing_ids) == ["idem-doc"]


async def test_a_request_id_that_is_not_a_uuid_is_invalid(make_settings: Any) -> None:
    async with running(make_settings()) as ctx:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await ctx.stub.AppendMemory(append("s-bad", "x", request_id="not-a-uuid"))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(failed.value)[1] == ["request_id"]
        assert await working_count(ctx, "s-bad") == 0


async def test_an_outcome_expires_after_the_retention_window_and_is_purged(
    make_settings: Any, store_kind: str
) -> None:
    base: Settings = make_settings()
    settings = dataclasses.replace(
        base, core=base.core.model_copy(update={"request_retention_s": 1.0})
    )
    async with running(settings) as ctx:
        request = append("s-expiry", "remembered", request_id=key())
        await ctx.stub.AppendMemory(request)
        await ctx.stub.AppendMemory(request)
        assert await working_count(ctx, "s-expiry") == 1
        await asyncio.sleep(1.2)
        await ctx.stub.AppendMemory(request)  # the key is forgotten: a new write
        assert await working_count(ctx, "s-expiry") == 2
        await asyncio.sleep(1.2)
        await ctx.stub.AppendMemory(append("s-expiry", "other", request_id=key()))
    assert stored_outcomes(settings, store_kind) == 1  # the expired one is gone


def stored_outcomes(settings: Settings, store_kind: str) -> int:
    """Outcomes held by the store: rows of request_outcomes, or Redis keys."""
    if store_kind == "redis":
        client = redis.Redis.from_url(settings.context.redis_url.get_secret_value())
        try:
            return len(client.keys(f"{settings.context.redis_key_prefix}req:*"))
        finally:
            client.close()
    path = settings.core.data_dir_for(ServiceName.CONTEXT) / settings.context.sqlite_filename
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM request_outcomes").fetchone()[0])


async def test_duplicates_sent_to_two_replicas_on_one_redis_write_once(
    make_settings: Any, store_kind: str
) -> None:
    if store_kind != "redis":
        pytest.skip("replicas share a store only on Redis")
    settings = make_settings()
    async with running(settings) as one, running(settings) as two:
        request = append("s-replicas", "written once", request_id=key())
        replies = await asyncio.gather(
            *(replica.stub.AppendMemory(request) for replica in (one, two) * 5)
        )
        assert len({tuple(r.entry_ids) for r in replies}) == 1
        assert await working_count(one, "s-replicas") == 1
