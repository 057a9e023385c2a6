"""MiniLM sentence embeddings with a logistic-regression head, and the hybrid of it
with TF-IDF (a weighted mean of the two calibrated probability vectors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from switchboard_server.classification.backends.base import (
    Encoder,
    EncoderFactory,
    FloatArray,
    LinearHead,
)
from switchboard_server.classification.backends.tfidf import TfidfScorer


def fit_logistic(features: FloatArray, labels: Sequence[str], c: float) -> LinearHead:
    """Multinomial logistic regression; classes sorted like ``sorted(set(labels))``."""
    classes = sorted(set(labels))
    if len(classes) == 1:
        return LinearHead(np.zeros((1, features.shape[1]), np.float32), np.zeros(1, np.float32))
    from sklearn.linear_model import LogisticRegression  # training only

    model = LogisticRegression(C=c, max_iter=1000).fit(features, labels)
    coef, intercept = model.coef_, model.intercept_
    if len(classes) == 2:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return LinearHead(coef, intercept)


class EmbeddingScorer:
    """Sentence vectors -> calibrated linear head. The encoder is attached, never pickled."""

    backend = "embeddings"

    def __init__(self, head: LinearHead, classes: Sequence[str]) -> None:
        self.head = head
        self.classes = tuple(classes)
        self._encoder: Encoder | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None
        return state

    def bind(self, encoder_factory: EncoderFactory) -> None:
        if self._encoder is None:
            self._encoder = encoder_factory()

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise RuntimeError("EmbeddingScorer used before bind()")
        return self._encoder

    def analyse(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        vectors = self.encoder.encode(texts)
        return self.head.proba(vectors), vectors

    def proba(self, texts: Sequence[str]) -> FloatArray:
        return self.analyse(texts)[0]

    def proba_from_vectors(self, vectors: FloatArray) -> FloatArray:
        return self.head.proba(vectors)

    def features(self, texts: Sequence[str]) -> FloatArray:
        return self.encoder.encode(texts)


class HybridScorer:
    """weight * embeddings probabilities + (1 - weight) * TF-IDF probabilities."""

    backend = "hybrid"

    def __init__(self, embeddings: EmbeddingScorer, tfidf: TfidfScorer, weight: float) -> None:
        if embeddings.classes != tfidf.classes:
            raise ValueError("hybrid parts must share their classes")
        self.embeddings = embeddings
        self.tfidf = tfidf
        self.weight = weight
        self.classes = embeddings.classes

    def bind(self, encoder_factory: EncoderFactory) -> None:
        self.embeddings.bind(encoder_factory)

    def analyse(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        emb_proba, vectors = self.embeddings.analyse(texts)
        return self._mix(emb_proba, self.tfidf.proba(texts)), vectors

    def proba(self, texts: Sequence[str]) -> FloatArray:
        return self._mix(self.embeddings.proba(texts), self.tfidf.proba(texts))

    def _mix(self, emb_proba: FloatArray, tfidf_proba: FloatArray) -> FloatArray:
        mixed = self.weight * emb_proba + (1.0 - self.weight) * tfidf_proba
        return mixed.astype(np.float32)

    def features(self, texts: Sequence[str]) -> FloatArray:
        return self.embeddings.features(texts)


def label_index(classes: Sequence[str], labels: Sequence[str]) -> npt.NDArray[np.int64]:
    """Position of each label in ``classes`` (labels must all be known)."""
    position = {c: i for i, c in enumerate(classes)}
    return np.array([position[label] for label in labels], dtype=np.int64)
