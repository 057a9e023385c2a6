"""Get the model for some data: the cached artifact when there is one, else train it."""

from __future__ import annotations

import time

import structlog

from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.backends.base import EncoderFactory
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.model import TrainConfig, TrainedModel, artifact_key
from switchboard_server.classification.sources import DataSource
from switchboard_server.classification.trainer import Progress, train_model

log = structlog.get_logger(__name__)


def load_or_train(
    config: TrainConfig,
    source: DataSource,
    runtime: list[Example],
    artifacts: ArtifactStore,
    encoder_factory: EncoderFactory,
    progress: Progress | None = None,
) -> tuple[TrainedModel, bool]:
    """(model, whether it includes every run-time example).

    Order: the artifact for base + run-time data; else (with run-time data) the base
    model's artifact, to be brought up to date by a background retrain; else train
    on base + run-time data and save the artifact.
    """
    base, held, labels = source.train, source.heldout, source.labels
    full = base + runtime
    model = artifacts.load(artifact_key(config, full, held, labels), encoder_factory)
    if model is not None:
        log.info("model.loaded", version=model.version, cached=True)
        return model, True
    if runtime:
        fallback = artifacts.load(artifact_key(config, base, held, labels), encoder_factory)
        if fallback is not None:
            log.info("model.loaded", version=fallback.version, cached=True, stale=True)
            return fallback, False
    started = time.perf_counter()
    model = train_model(full, held, config, encoder_factory, progress, labels)
    artifacts.save(model)
    log.info(
        "model.trained",
        version=model.version,
        seconds=round(time.perf_counter() - started, 2),
        examples=model.training_example_count,
    )
    return model, True
