"""The knowledge index is derived from the store's document log, on both backends.

- kill -9 of a real ``python -m switchboard_server context`` while writers ingest
  batches: after a restart every acknowledged document is found first for its own
  word, and every batch is found whole or not at all;
- a lost or stale index directory is caught up on open;
- with Redis, a replica started later catches up by itself, and an ingest through
  one replica is found through the other within the poll interval and a commit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_server.testing import free_port, probe_channel, stop_process, wait_serving_async
from tests.support.context import (
    knowledge_ids,
    running,
    seconds_until_found,
    server_env,
    start_server,
)

WRITERS = 2
BATCH = 20
TARGET_BATCHES = 4
FILLER = "passage about the mesh retries health and tracing of switchboard services " * 4


def doc_id(w: int, n: int, i: int) -> str:
    return f"b{w}-{n}-{i}"


def word(w: int, n: int, i: int) -> str:
    return f"kbword{w}x{n}x{i}"


def batch(w: int, n: int) -> pb.IngestDocumentsRequest:
    return pb.IngestDocumentsRequest(
        documents=[
            pb.Document(id=doc_id(w, n, i), text=f"{word(w, n, i)} {FILLER}") for i in range(BATCH)
        ]
    )


async def ingester(
    stub: pb_grpc.ContextServiceAsyncStub, w: int, acked: list[int], enough: asyncio.Event
) -> None:
    n = 0
    while True:
        try:
            await stub.IngestDocuments(batch(w, n), timeout=10)
        except grpc.aio.AioRpcError:
            return
        acked[w] = n + 1
        if sum(acked) >= TARGET_BATCHES:
            enough.set()
        n += 1


async def first_document(stub: pb_grpc.ContextServiceAsyncStub, query: str) -> str:
    reply = await stub.GetContext(
        pb.GetContextRequest(query=query, include_knowledge_base=True, max_results=1)
    )
    return reply.sources[0].document_id if reply.sources else ""


async def test_acknowledged_batches_survive_kill_9_whole(
    make_settings: Any, tmp_path: Path
) -> None:
    env = server_env(make_settings(), free_port())
    target = f"127.0.0.1:{env['SWITCHBOARD_PORT']}"
    log = tmp_path / "server.log"
    acked = [0] * WRITERS
    proc = start_server(env, log)
    try:
        async with probe_channel(target) as channel:
            await wait_serving_async(channel, proc)
            stub = pb_grpc.ContextServiceStub(channel)
            enough = asyncio.Event()
            tasks = [asyncio.create_task(ingester(stub, w, acked, enough)) for w in range(WRITERS)]
            await asyncio.wait_for(enough.wait(), 120)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert sum(acked) >= TARGET_BATCHES

        proc = start_server(env, log)
        async with probe_channel(target) as channel:
            await wait_serving_async(channel, proc)
            stub = pb_grpc.ContextServiceStub(channel)
            for w in range(WRITERS):
                # every acknowledged batch, and the one in flight at the kill
                for n in range(acked[w] + 1):
                    found = await asyncio.gather(
                        *(first_document(stub, word(w, n, i)) for i in range(BATCH))
                    )
                    hits = [f == doc_id(w, n, i) for i, f in enumerate(found)]
                    if n < acked[w]:
                        assert all(hits), (w, n, hits)
                    else:  # all or nothing
                        assert all(hits) or not any(hits), (w, n, hits)
    finally:
        stop_process(proc)
    assert "knowledge.ingested" in log.read_text()


@pytest.mark.parametrize("damage", ["deleted", "behind"])
async def test_open_catches_up_a_lost_or_stale_index(
    make_settings: Any, tmp_path: Path, damage: str
) -> None:
    index = tmp_path / "index"
    settings = make_settings(index_dir=str(index), seed_default_knowledge=False)
    first = pb.Document(id="first", text="the lighthouse keeper logs the weather")
    second = pb.Document(id="second", text="the harbour master logs the ferries")
    async with running(settings) as server:
        await server.stub.IngestDocuments(pb.IngestDocumentsRequest(documents=[first]))
    shutil.copytree(index, tmp_path / "old")
    async with running(settings) as server:
        await server.stub.IngestDocuments(pb.IngestDocumentsRequest(documents=[second]))
        await server.stub.DeleteDocuments(pb.DeleteDocumentsRequest(document_ids=["first"]))
    shutil.rmtree(index)
    if damage == "behind":  # the index as it was before the second write and the delete
        shutil.copytree(tmp_path / "old", index)
    async with running(settings) as server:
        assert await knowledge_ids(server, "harbour ferries") == ["second"]
        assert await knowledge_ids(server, "lighthouse weather") == []


@pytest.mark.redis
async def test_replicas_share_one_knowledge_base(make_settings: Any, store_kind: str) -> None:
    if store_kind != "redis":
        pytest.skip("replicas need the Redis store")
    poll = 0.25
    settings = make_settings(index_poll_interval_s=poll)
    document = pb.Document(id="ferries", text="the harbour master logs the ferries")
    async with running(settings) as a:
        await a.stub.IngestDocuments(pb.IngestDocumentsRequest(documents=[document]))
        async with running(settings) as late:  # a new replica: its own, empty index
            assert await knowledge_ids(late, "harbour ferries") == ["ferries"]
            other = pb.Document(id="lights", text="the lighthouse keeper logs the weather")
            await late.stub.IngestDocuments(pb.IngestDocumentsRequest(documents=[other]))
            waited = await seconds_until_found(a, "lighthouse weather", "lights", poll + 1.0)
            assert waited <= poll + 1.0
            await a.stub.DeleteDocuments(pb.DeleteDocumentsRequest(document_ids=["ferries"]))
            for _ in range(200):
                if await knowledge_ids(late, "harbour ferries") == []:
                    break
                await asyncio.sleep(0.01)
            assert await knowledge_ids(late, "harbour ferries") == []
