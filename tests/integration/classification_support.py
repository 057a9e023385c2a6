"""Helpers for the classification integration tests.

* ``small_dataset(dir)``: 6 HWU64 intents x 25 examples (trains in well under a second);
* ``classification_server(data_dir, **overrides)``: the real server on 127.0.0.1:0 with
  a stub, stopped on exit even when the test fails;
* ``hwu64_models``: the full bundled model trained once per session; ``seed_models``
  copies it into a data dir so servers load it instead of training.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.app import AppServer, create_server
from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.lifecycle import load_or_train
from switchboard_server.classification.model import TrainConfig
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.sources import bundled_hwu64, load_source, resolve
from switchboard_server.config import CoreSettings, ServiceName, Settings
from tests.ports import free_port as free_port

SMALL_INTENTS = (
    "alarm/set",
    "alarm/remove",
    "weather/query",
    "music/likeness",
    "cooking/recipe",
    "transport/ticket",
)
SMALL_PER_INTENT = 25


def small_dataset(directory: Path) -> Path:
    counts = dict.fromkeys(SMALL_INTENTS, 0)
    lines = []
    for raw in bundled_hwu64("train").read_text().splitlines():
        record = json.loads(raw)
        intent = record["intent"]
        if intent in counts and counts[intent] < SMALL_PER_INTENT:
            counts[intent] += 1
            lines.append(raw)
    path = directory / "small.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def settings_for(data_dir: Path, **classification: Any) -> Settings:
    return Settings(
        core=CoreSettings(data_dir=data_dir, grace_period_s=0.0),
        classification=ClassificationSettings(**classification),
    )


@dataclass
class Running:
    server: AppServer
    port: int
    channel: grpc.aio.Channel
    stub: pb_grpc.ClassificationServiceStub


@contextlib.asynccontextmanager
async def classification_server(data_dir: Path, **classification: Any) -> AsyncIterator[Running]:
    server, port = await create_server(
        settings_for(data_dir, **classification), ServiceName.CLASSIFICATION, "127.0.0.1:0"
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await server.start()
        yield Running(server, port, channel, pb_grpc.ClassificationServiceStub(channel))
    finally:
        await channel.close(None)
        await server.stop(0)


def seed_models(models: Path, data_dir: Path) -> None:
    target = data_dir / ServiceName.CLASSIFICATION.value / "models"
    target.mkdir(parents=True, exist_ok=True)
    for path in models.glob("*.pkl"):
        shutil.copy2(path, target / path.name)


@pytest.fixture(scope="session")
def hwu64_models(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    """Directory holding the trained default (bundled HWU64, tfidf) model artifact.

    Trained exactly as a server with default settings would (same artifact key), and
    shared through the suite's ``model_cache`` so the whole session trains it once.
    """
    data_dir = tmp_path_factory.mktemp("hwu64-seed") / ServiceName.CLASSIFICATION.value
    settings = ClassificationSettings()
    artifacts = ArtifactStore(data_dir, keep=settings.artifacts_kept)
    artifacts.models.mkdir(parents=True)
    for path in model_cache.glob("*.pkl"):
        shutil.copy2(path, artifacts.models / path.name)
    choice = resolve(settings, artifacts)
    source = load_source(choice.train_path, choice.heldout_path)
    config = TrainConfig.from_settings(settings, choice.backend)
    load_or_train(config, source, [], artifacts, lambda: None)  # type: ignore[arg-type,return-value]
    for path in artifacts.models.glob("*.pkl"):
        if not (model_cache / path.name).exists():
            shutil.copy2(path, model_cache / path.name)
    return artifacts.models
