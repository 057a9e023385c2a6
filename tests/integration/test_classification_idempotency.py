"""AddExamples with a request_id (AIP-155): a repeat adds nothing and answers the same."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as pb
from tests.support.classification import classification_server, small_dataset
from tests.support.rich_status import error_details


def add(text: str, intent: str, request_id: str) -> pb.AddExamplesRequest:
    return pb.AddExamplesRequest(
        examples=[pb.Example(text=text, intent=intent)], request_id=request_id
    )


async def test_add_examples_repeated_with_its_key_adds_once(tmp_path: Path) -> None:
    data = small_dataset(tmp_path)
    async with classification_server(
        tmp_path / "data", train_path=data, retrain_enabled=False
    ) as running:
        stub = running.stub
        request = add("beam me up scotty", "scifi/teleport", str(uuid.uuid4()))
        replies = await asyncio.gather(*(stub.AddExamples(request) for _ in range(10)))
        assert {(r.added_count, r.runtime_example_count) for r in replies} == {(1, 1)}
        assert all(list(r.new_intents) == ["scifi/teleport"] for r in replies)
        assert (await stub.AddExamples(request)) == replies[0]
        info = await stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.runtime_example_count == 1

        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.AddExamples(add("warp speed now", "scifi/warp", request.request_id))
        assert failed.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_details(failed.value)[0].reason == "REQUEST_ID_REUSED"

        second = await stub.AddExamples(add("warp speed now", "scifi/warp", str(uuid.uuid4())))
        assert second.runtime_example_count == 2
