"""GetKnowledgeStats and ListDocuments on both backends (what ``switchboard kb`` uses)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc
import pytest

from switchboard.context.v1 import context_service_pb2 as pb
from tests.support.context import running
from tests.support.rich_status import violated_fields


async def test_stats_and_listing_follow_ingest_and_delete(
    make_settings: Any, store_kind: str
) -> None:
    async with running(make_settings(seed_default_knowledge=False)) as ctx:
        empty = await ctx.stub.GetKnowledgeStats(pb.GetKnowledgeStatsRequest())
        assert (empty.document_count, empty.passage_count) == (0, 0)
        assert not empty.HasField("last_update_time")

        before = time.time()
        docs = [
            pb.Document(id=i, title="t", text="Refunds take ten days. " * n)
            for n, i in enumerate(["a.md:one", "a.md:two", "a.mdx:one", "b.md:one"], 1)
        ]
        await ctx.stub.IngestDocuments(
            pb.IngestDocumentsRequest(documents=docs, request_id=str(uuid.uuid4()))
        )
        stats = await ctx.stub.GetKnowledgeStats(pb.GetKnowledgeStatsRequest())
        assert stats.document_count == 4
        assert stats.passage_count >= 4
        assert stats.index_bytes > empty.index_bytes  # the index grew, on both stores
        if store_kind == "sqlite":
            assert stats.last_update_time.ToSeconds() >= int(before)
        else:  # documented: Redis keeps no last-ingest time
            assert not stats.HasField("last_update_time")

        everything = await ctx.stub.ListDocuments(pb.ListDocumentsRequest())
        assert list(everything.document_ids) == ["a.md:one", "a.md:two", "a.mdx:one", "b.md:one"]
        assert everything.next_page_token == ""

        pages: list[list[str]] = []
        token = ""
        while True:
            page = await ctx.stub.ListDocuments(
                pb.ListDocumentsRequest(id_prefix="a.md:", page_size=1, page_token=token)
            )
            pages.append(list(page.document_ids))
            token = page.next_page_token
            if not token:
                break
        assert pages == [["a.md:one"], ["a.md:two"], []]

        await ctx.stub.DeleteDocuments(
            pb.DeleteDocumentsRequest(document_ids=["a.md:two"], request_id=str(uuid.uuid4()))
        )
        left = await ctx.stub.ListDocuments(pb.ListDocumentsRequest(id_prefix="a.md"))
        assert list(left.document_ids) == ["a.md:one", "a.mdx:one"]
        after = await ctx.stub.GetKnowledgeStats(pb.GetKnowledgeStatsRequest())
        assert after.document_count == 3


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListDocumentsRequest(id_prefix="a/b"), "id_prefix"),
        (pb.ListDocumentsRequest(page_size=1001), "page_size"),
        (pb.ListDocumentsRequest(page_size=-1), "page_size"),
        (pb.ListDocumentsRequest(id_prefix="a:", page_token="b:1"), "page_token"),
    ],
)
async def test_listing_rejects_bad_fields(
    make_settings: Any, request_: pb.ListDocumentsRequest, field: str
) -> None:
    async with running(make_settings(seed_default_knowledge=False)) as ctx:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ctx.stub.ListDocuments(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == [field]
