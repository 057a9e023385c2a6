"""Train a model from examples: fit, calibrate on held-out data, tune the threshold.

Without a held-out file a stratified share of the training data is held out for
calibration and threshold tuning, then the model is refitted on everything with
the temperature and threshold it got.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from switchboard_server.classification.backends.base import (
    EncoderFactory,
    FloatArray,
    LinearHead,
    Scorer,
)
from switchboard_server.classification.backends.embeddings import (
    EmbeddingScorer,
    HybridScorer,
    fit_logistic,
    label_index,
)
from switchboard_server.classification.backends.tfidf import (
    TfidfFeaturizer,
    TfidfScorer,
    fit_linear_svm,
)
from switchboard_server.classification.dataset import DatasetError, Example
from switchboard_server.classification.model import TrainConfig, TrainedModel, artifact_key
from switchboard_server.classification.threshold import tune_threshold

SPLIT_SEED = 20240611


class Progress(Protocol):
    """Where training reports its stages (the CLI shows a progress bar)."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class NoProgress:
    def stage(self, name: str, total: int) -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None


def holdout_split(
    examples: Sequence[Example], fraction: float
) -> tuple[list[Example], list[Example]]:
    """Deterministic stratified split; intents with fewer than 3 examples stay in training."""
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    rng = random.Random(SPLIT_SEED)
    keep: list[Example] = []
    held: list[Example] = []
    for intent in sorted(by_intent):
        group = list(by_intent[intent])
        rng.shuffle(group)
        n_held = max(1, round(len(group) * fraction)) if len(group) >= 3 else 0
        held.extend(group[:n_held])
        keep.extend(group[n_held:])
    return keep, held


def _fit_tfidf(
    config: TrainConfig, texts: list[str], labels: list[str], held: list[str], held_y: list[str]
) -> tuple[TfidfScorer, FloatArray]:
    featurizer = TfidfFeaturizer(config.char_min_df)
    head = fit_linear_svm(featurizer.fit(texts), labels, config.tfidf_c)
    classes = sorted(set(labels))
    scorer = TfidfScorer(featurizer, head, classes)
    known = [(t, y) for t, y in zip(held, held_y, strict=True) if y in set(classes)]
    if known:
        head.calibrate(
            featurizer.transform_many([t for t, _ in known]),
            label_index(classes, [y for _, y in known]),
        )
    if not held:
        return scorer, np.empty((0, len(classes)), np.float32)
    return scorer, head.proba(featurizer.transform_many(held))


def _fit_embedding_head(
    config: TrainConfig,
    vectors: FloatArray,
    labels: list[str],
    held_vectors: FloatArray,
    held_y: list[str],
) -> tuple[LinearHead, FloatArray]:
    classes = sorted(set(labels))
    head = fit_logistic(vectors, labels, config.embeddings_c)
    mask = np.array([y in set(classes) for y in held_y], dtype=bool)
    if mask.any():
        known_y = [y for y, ok in zip(held_y, mask, strict=True) if ok]
        head.calibrate(held_vectors[mask], label_index(classes, known_y))
    empty = np.empty((0, len(classes)), np.float32)
    return head, head.proba(held_vectors) if len(held_y) else empty


def train_model(
    train: Sequence[Example],
    heldout: Sequence[Example] | None,
    config: TrainConfig,
    encoder_factory: EncoderFactory,
    progress: Progress | None = None,
    renamed: Mapping[str, str] | None = None,
) -> TrainedModel:
    """Fit ``config.backend`` on ``train`` (its ``oos`` examples only tune the threshold).

    ``renamed`` (normalized -> original label) is kept in the model, so answers can be
    shown in the training data's own labels."""
    progress = progress or NoProgress()
    held_list = list(heldout) if heldout is not None else None
    key = artifact_key(config, list(train), held_list, renamed)
    in_scope = [e for e in train if e.in_scope]
    if not in_scope:
        raise DatasetError(["the training data holds no in-scope examples"])
    refit = heldout is None
    if heldout is None:
        fit_set, held_set = holdout_split(in_scope, config.holdout_fraction)
        held_set += [e for e in train if not e.in_scope]
    else:
        fit_set, held_set = in_scope, list(heldout)
    texts, labels = [e.text for e in fit_set], [e.intent for e in fit_set]
    held_texts, held_y = [e.text for e in held_set], [e.intent for e in held_set]
    progress.stage("fit", 2 if refit else 1)
    tfidf: TfidfScorer | None = None
    embeddings: EmbeddingScorer | None = None
    held_proba: FloatArray
    if config.backend in ("tfidf", "hybrid"):
        tfidf, held_proba = _fit_tfidf(config, texts, labels, held_texts, held_y)
    if config.backend in ("embeddings", "hybrid"):
        encoder = encoder_factory()
        everything = texts + held_texts
        progress.stage("embed", len(everything))
        vectors = encoder.encode(everything, progress=progress.advance)
        fit_vec, held_vec = vectors[: len(texts)], vectors[len(texts) :]
        head, emb_proba = _fit_embedding_head(config, fit_vec, labels, held_vec, held_y)
        embeddings = EmbeddingScorer(head, sorted(set(labels)))
        if tfidf is not None:
            w = config.hybrid_weight
            held_proba = (w * emb_proba + (1 - w) * held_proba).astype(np.float32)
        else:
            held_proba = emb_proba.astype(np.float32)
    progress.advance()
    in_mask = np.array([y != "oos" for y in held_y], dtype=bool)
    top = held_proba.max(axis=1) if len(held_y) else np.empty(0, np.float32)
    threshold = tune_threshold(
        top[in_mask] if len(held_y) else top,
        top[~in_mask] if len(held_y) else top,
        target_acceptance=config.target_acceptance,
        low=config.min_threshold,
        high=config.max_threshold,
    )
    if refit:
        all_texts, all_labels = [e.text for e in in_scope], [e.intent for e in in_scope]
        if tfidf is not None:
            temperature = tfidf.head.temperature
            tfidf, _ = _fit_tfidf(config, all_texts, all_labels, [], [])
            tfidf.head.temperature = temperature
        if embeddings is not None:
            temperature = embeddings.head.temperature
            held_in = [i for i, y in enumerate(held_y) if y != "oos"]
            all_vec = np.vstack([fit_vec, held_vec[held_in]])
            all_y = labels + [held_y[i] for i in held_in]
            head = fit_logistic(all_vec, all_y, config.embeddings_c)
            head.temperature = temperature
            embeddings = EmbeddingScorer(head, sorted(set(all_y)))
        progress.advance()
    scorer: Scorer
    if embeddings is not None and tfidf is not None:
        scorer = HybridScorer(embeddings, tfidf, config.hybrid_weight)
    elif embeddings is not None:
        scorer = embeddings
    else:
        assert tfidf is not None
        scorer = tfidf
    scorer.bind(encoder_factory)
    return TrainedModel(
        scorer=scorer,
        backend=config.backend,
        threshold=threshold,
        artifact_key=key,
        trained_at=datetime.now(UTC),
        training_example_count=len(in_scope),
        labels=dict(renamed or {}),
    )
