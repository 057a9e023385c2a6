"""Bad input -> INVALID_ARGUMENT naming the field, and nothing partially written."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from switchboard.context.v1 import context_service_pb2 as pb
from tests.support.context import Running, running
from tests.support.rich_status import violated_fields

GOOD = pb.Document(id="good-doc", title="Zebras", text="zebra stripes are unique")


def raw_type(value: int) -> pb.MemoryType.ValueType:
    """A memory type by number, known or not (the service must reject the unknown)."""
    return pb.MemoryType.ValueType(value)


async def rejected(call: Any, request: Any) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return violated_fields(err.value)


async def knowledge_about_zebras(ctx: Running) -> list[str]:
    reply = await ctx.stub.GetContext(
        pb.GetContextRequest(query="zebra stripes", include_knowledge_base=True)
    )
    return [s.document_id for s in reply.sources]


async def test_bad_ingest_writes_nothing(make_settings: Any) -> None:
    settings = make_settings(max_document_bytes=1000, max_documents_per_request=3)
    async with running(settings) as ctx:
        oversized = pb.Document(id="big", text="y" * 1001)
        fields = await rejected(
            ctx.stub.IngestDocuments, pb.IngestDocumentsRequest(documents=[GOOD, oversized])
        )
        assert fields == ["documents[1].text"]
        fields = await rejected(
            ctx.stub.IngestDocuments,
            pb.IngestDocumentsRequest(documents=[GOOD, *[pb.Document(id=f"d{i}", text="t")
                                                         for i in range(3)]]),
        )  # fmt: skip
        assert fields == ["documents"]
        fields = await rejected(
            ctx.stub.IngestDocuments,
            pb.IngestDocumentsRequest(documents=[GOOD, pb.Document(id="good-doc", text="again")]),
        )
        assert fields == ["documents[1].id"]
        fields = await rejected(
            ctx.stub.IngestDocuments,
            pb.IngestDocumentsRequest(documents=[GOOD, pb.Document(id="bad id!", text="t")]),
        )
        assert fields == ["documents[1].id"]
        assert await knowledge_about_zebras(ctx) == []


async def test_bad_append_writes_nothing(ctx: Running) -> None:
    request = pb.AppendMemoryRequest(
        session_id="s-bad",
        entries=[
            pb.MemoryEntry(type=pb.MEMORY_TYPE_WORKING, content="fine"),
            pb.MemoryEntry(type=raw_type(9), content="unknown type"),
            pb.MemoryEntry(type=pb.MEMORY_TYPE_SEMANTIC, content="   "),
        ],
    )
    fields = await rejected(ctx.stub.AppendMemory, request)
    stats = await ctx.stub.GetMemoryStats(pb.GetMemoryStatsRequest(session_id="s-bad"))
    assert fields == ["entries[1].type", "entries[2].content"]
    assert stats.memory_stats.working_count == 0


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("GetContext", pb.GetContextRequest(query="  "), "query"),
        ("GetContext", pb.GetContextRequest(query="q", memory_types=[raw_type(4)]),
         "memory_types[0]"),
        ("GetContext", pb.GetContextRequest(query="q", max_context_chars=70_000),
         "max_context_chars"),
        ("AppendMemory", pb.AppendMemoryRequest(session_id="s"), "entries"),
        ("AppendMemory", pb.AppendMemoryRequest(
            session_id="s", entries=[pb.MemoryEntry(type=raw_type(1), content="x")] * 300),
         "entries"),
        ("ClearMemory", pb.ClearMemoryRequest(session_id=""), "session_id"),
        ("GetMemoryStats", pb.GetMemoryStatsRequest(session_id="bad id"), "session_id"),
        ("DeleteDocuments", pb.DeleteDocumentsRequest(), "document_ids"),
        ("DeleteDocuments", pb.DeleteDocumentsRequest(document_ids=["ok", ""]),
         "document_ids[1]"),
        ("WarmupCache", pb.WarmupCacheRequest(), "queries"),
        ("WarmupCache", pb.WarmupCacheRequest(
            queries=[pb.GetContextRequest(query="ok"), pb.GetContextRequest(query="")]),
         "queries[1].query"),
    ],
)  # fmt: skip
async def test_bad_request_names_the_field(
    ctx: Running, method: str, request_: Any, field: str
) -> None:
    assert field in await rejected(getattr(ctx.stub, method), request_)


async def test_delete_reports_missing_ids(ctx: Running) -> None:
    await ctx.stub.IngestDocuments(pb.IngestDocumentsRequest(documents=[GOOD]))
    reply = await ctx.stub.DeleteDocuments(
        pb.DeleteDocumentsRequest(document_ids=["good-doc", "nope"])
    )
    assert reply.deleted_count == 1
    assert list(reply.missing_ids) == ["nope"]
    assert await knowledge_about_zebras(ctx) == []
