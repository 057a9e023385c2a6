"""Helpers of the classification tests.

* ``small_examples()`` and ``FakeEncoder``: tiny deterministic data and vectors for
  fast unit tests of the model;
* ``small_dataset(dir)``: 6 HWU64 intents x 25 examples (trains in well under a second);
* ``classification_server(data_dir, **overrides)``: the real server on 127.0.0.1:0 with
  a stub, stopped on exit even when the test fails;
* ``train_default_model(dir, model_cache)``: the full bundled model, trained as a server
  with default settings would; ``seed_models`` copies it into a data dir so servers
  load it instead of training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.app import AppServer
from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.lifecycle import load_or_train
from switchboard_server.classification.model import TrainConfig
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.sources import bundled_hwu64, load_source, resolve
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.testing import start_services

# ---- unit-test data ---------------------------------------------------------------------

PHRASES = {
    "alarm/set": ["wake me up at {}", "set an alarm for {}", "alarm at {} please"],
    "alarm/remove": ["cancel my {} alarm", "delete the alarm at {}", "remove alarm {}"],
    "weather/query": ["what is the weather at {}", "will it rain at {}", "forecast for {}"],
    "music/play": ["play some {} music", "put on {} songs", "start the {} playlist"],
    "lights/on/kitchen": ["turn on the kitchen light at {}", "kitchen lights on {}"],
}
FILLERS = ["seven", "noon", "six am", "jazz", "friday", "tonight", "monday", "eight"]


def small_examples() -> list[Example]:
    return [
        Example(phrase.format(filler), intent)
        for intent, phrases in PHRASES.items()
        for phrase in phrases
        for filler in FILLERS
    ]


class FakeEncoder:
    """Deterministic bag-of-words hashing into 64 dimensions, L2-normalised."""

    dimension = 64

    def __init__(self) -> None:
        self.calls = 0

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> npt.NDArray[np.float32]:
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension
                out[row, bucket] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        if progress is not None:
            progress(len(texts))
        return out


# ---- servers ----------------------------------------------------------------------------

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
    stub: pb_grpc.ClassificationServiceAsyncStub


@contextlib.asynccontextmanager
async def classification_server(data_dir: Path, **classification: Any) -> AsyncIterator[Running]:
    """The real classification server on 127.0.0.1:0 and a stub; stopped on exit."""
    service = ServiceName.CLASSIFICATION
    settings = settings_for(data_dir, **classification)
    async with start_services(data_dir, [service], settings=settings) as started:
        channel = started.channel(service)
        yield Running(
            started.servers[service],
            started.ports[service],
            channel,
            pb_grpc.ClassificationServiceStub(channel),
        )


def seed_models(models: Path, data_dir: Path) -> None:
    target = data_dir / ServiceName.CLASSIFICATION.value / "models"
    target.mkdir(parents=True, exist_ok=True)
    for path in models.glob("*.pkl"):
        shutil.copy2(path, target / path.name)


def train_default_model(data_dir: Path, model_cache: Path) -> Path:
    """The models directory holding the trained default (bundled HWU64, tfidf) model.

    Trained exactly as a server with default settings would (same artifact key), and
    shared through ``model_cache`` (loaded from it if there, added to it if not).
    """
    settings = ClassificationSettings()
    artifacts = ArtifactStore(data_dir, keep=settings.artifacts_kept)
    artifacts.models.mkdir(parents=True)
    for path in model_cache.glob("*.pkl"):
        shutil.copy2(path, artifacts.models / path.name)
    choice = resolve(settings, artifacts)
    source = load_source(choice.train_path, choice.heldout_path, choice.spec)
    config = TrainConfig.from_settings(settings, choice.backend)
    load_or_train(config, source, [], artifacts, lambda: None)  # type: ignore[arg-type]
    for path in artifacts.models.glob("*.pkl"):
        if not (model_cache / path.name).exists():
            shutil.copy2(path, model_cache / path.name)
    return artifacts.models
