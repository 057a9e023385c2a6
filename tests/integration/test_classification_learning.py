"""Learning while serving: AddExamples is effective at once, retrains in the background,
and a storm of Classify calls during the retrain sees no error."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from tests.support.classification import classification_server, small_dataset

NEW_TEXT = "beam me up to the mothership scotty"
NEW_INTENT = "scifi/teleport"


async def wait_for_version_change(
    stub: pb_grpc.ClassificationServiceAsyncStub, old: str, limit_s: float = 90.0
) -> str:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        info = await stub.GetModelInfo(pb.GetModelInfoRequest())
        if info.model_version != old and not info.retraining:
            return str(info.model_version)
        await asyncio.sleep(0.1)
    raise AssertionError("the retrained model was never swapped in")


async def test_a_new_example_changes_the_next_answer_and_the_retrain_swaps_the_model(
    tmp_path: Path,
) -> None:
    data = small_dataset(tmp_path)
    async with classification_server(
        tmp_path / "data", train_path=data, retrain_delay_s=0.0
    ) as running:
        stub = running.stub
        before = (await stub.Classify(pb.ClassifyRequest(text=NEW_TEXT))).classification
        assert before.intent != NEW_INTENT
        added = await stub.AddExamples(
            pb.AddExamplesRequest(examples=[pb.Example(text=NEW_TEXT, intent=NEW_INTENT)])
        )
        assert (added.added_count, added.runtime_example_count) == (1, 1)
        assert list(added.new_intents) == [NEW_INTENT]
        assert added.retrain_scheduled
        after = (
            await stub.Classify(
                pb.ClassifyRequest(text=NEW_TEXT, options=pb.ClassifyOptions(include_debug=True))
            )
        ).classification
        assert after.intent == NEW_INTENT
        assert (after.hierarchy.l1, after.hierarchy.l2) == ("scifi", "teleport")
        assert after.debug.overlay_match
        assert after.debug.overlay_similarity == pytest.approx(1.0, abs=1e-4)
        assert after.model_version == before.model_version  # same base model until the swap
        new_version = await wait_for_version_change(stub, before.model_version)
        swapped = (await stub.Classify(pb.ClassifyRequest(text=NEW_TEXT))).classification
        assert swapped.model_version == new_version
        assert swapped.intent == NEW_INTENT
        intents = await stub.ListIntents(pb.ListIntentsRequest())
        new = next(i for i in intents.intents if i.path == NEW_INTENT)
        assert (new.example_count, new.runtime_example_count) == (0, 1)
        info = await stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.training_example_count == 151  # 6 x 25 base + the new one
        assert (
            running.server.runtime.metrics.get_sample_value(
                "switchboard_classification_retrains_total", {"outcome": "ok"}
            )
            == 1
        )


async def test_a_storm_of_classify_during_a_background_retrain_sees_no_error(
    tmp_path: Path,
) -> None:
    data = small_dataset(tmp_path)
    async with classification_server(
        tmp_path / "data", train_path=data, retrain_delay_s=0.0
    ) as running:
        stub = running.stub
        old = (await stub.GetModelInfo(pb.GetModelInfoRequest())).model_version
        versions: set[str] = set()
        swapped = asyncio.Event()
        calls = 0

        async def storm() -> None:
            nonlocal calls
            while not swapped.is_set() and calls < 20_000:
                batch = await stub.ClassifyBatch(
                    pb.ClassifyBatchRequest(texts=["set an alarm for nine", NEW_TEXT])
                )
                versions.update(c.model_version for c in batch.classifications)
                single = await stub.Classify(pb.ClassifyRequest(text="will it rain today"))
                versions.add(single.classification.model_version)
                calls += 2

        workers = [asyncio.create_task(storm()) for _ in range(8)]
        await asyncio.sleep(0.05)
        await stub.AddExamples(
            pb.AddExamplesRequest(
                examples=[pb.Example(text=f"{NEW_TEXT} {i}", intent=NEW_INTENT) for i in range(5)]
            )
        )
        new = await wait_for_version_change(stub, old)
        await asyncio.sleep(0.2)  # let the storm see the new model
        swapped.set()
        await asyncio.gather(*workers)  # any failed RPC raises here
        assert calls > 0
        assert {old, new} <= versions


async def test_a_full_example_store_refuses_with_resource_exhausted(tmp_path: Path) -> None:
    import grpc

    data = small_dataset(tmp_path)
    async with classification_server(
        tmp_path / "data", train_path=data, max_runtime_examples=2, retrain_enabled=False
    ) as running:
        examples = [pb.Example(text=f"teleport me {i}", intent=NEW_INTENT) for i in range(3)]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await running.stub.AddExamples(pb.AddExamplesRequest(examples=examples))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reply = await running.stub.AddExamples(pb.AddExamplesRequest(examples=examples[:2]))
        assert reply.runtime_example_count == 2
        assert not reply.retrain_scheduled
