"""The interface every backend implements, and the shared calibrated linear head."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float32]
Features: TypeAlias = FloatArray | sp.csr_matrix


class Encoder(Protocol):
    """Turns texts into L2-normalised dense sentence vectors."""

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> FloatArray:
        """One unit vector per text; ``progress(n)`` after each batch of n texts."""
        ...


class Scorer(Protocol):
    """A trained model: calibrated probabilities over ``classes`` plus overlay features."""

    backend: str
    classes: tuple[str, ...]

    def analyse(self, texts: Sequence[str]) -> tuple[FloatArray, Features]:
        """(probabilities of shape (n, classes), L2-normalised features of shape (n, d))."""
        ...

    def proba(self, texts: Sequence[str]) -> FloatArray:
        """The probabilities of :meth:`analyse` alone (no overlay to compare features with)."""
        ...

    def features(self, texts: Sequence[str]) -> Features:
        """L2-normalised features for the nearest-neighbour overlay."""
        ...

    def bind(self, encoder_factory: EncoderFactory) -> None:
        """Attach run-time resources (the ONNX encoder) after unpickling."""
        ...


class EncoderFactory(Protocol):
    def __call__(self) -> Encoder: ...


def cosine(queries: Features, keys: Features) -> FloatArray:
    """Cosine similarities (rows are already L2-normalised), dense (n, m)."""
    product: Any = queries @ keys.T
    if sp.issparse(product):
        return np.asarray(product.toarray(), dtype=np.float32)
    return np.asarray(product, dtype=np.float32)


def log_softmax(logits: npt.NDArray[Any]) -> npt.NDArray[Any]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    result: npt.NDArray[Any] = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def softmax(logits: FloatArray) -> FloatArray:
    result: FloatArray = np.exp(log_softmax(logits)).astype(np.float32)
    return result


class LinearHead:
    """Logits = X W^T + b, probabilities = softmax(logits / temperature)."""

    def __init__(self, coef: FloatArray, intercept: FloatArray) -> None:
        # stored transposed and C-contiguous: sparse @ dense then needs no copy
        self.weights = np.ascontiguousarray(np.asarray(coef, dtype=np.float32).T)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.temperature = 1.0

    def logits(self, features: Features) -> FloatArray:
        raw = features @ self.weights
        return np.asarray(raw, dtype=np.float32) + self.intercept

    def proba(self, features: Features) -> FloatArray:
        return softmax(self.logits(features) / np.float32(self.temperature))

    def proba_of_rows(self, rows: Sequence[tuple[npt.NDArray[np.int64], FloatArray]]) -> FloatArray:
        """:meth:`proba` of sparse rows given as (column indices, values): no matrix set-up."""
        logits = np.empty((len(rows), len(self.intercept)), np.float32)
        for i, (columns, values) in enumerate(rows):
            logits[i] = values @ self.weights[columns] + self.intercept
        return softmax(logits / np.float32(self.temperature))

    def calibrate(self, features: Features, label_index: npt.NDArray[np.int64]) -> float:
        """Fit the temperature minimising held-out negative log-likelihood."""
        from scipy.optimize import minimize_scalar  # training only: keeps serving imports light

        if len(label_index) == 0:
            return self.temperature
        logits = self.logits(features).astype(np.float64)
        rows = np.arange(len(label_index))

        def nll(log_t: float) -> float:
            scaled = log_softmax(logits / np.exp(log_t))
            return float(-scaled[rows, label_index].mean())

        result = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
        self.temperature = float(np.exp(result.x))
        return self.temperature
