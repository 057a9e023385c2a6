"""Nearest-neighbour overlay: run-time examples decide verdicts before a retrain.

An immutable snapshot (examples plus their L2-normalised features under the serving
model); adding returns a new overlay, so readers never see a half-built one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from switchboard_server.classification.backends.base import Features, FloatArray, cosine
from switchboard_server.classification.dataset import Example


@dataclass(frozen=True)
class Match:
    """The closest run-time example of a text."""

    intent: str
    similarity: float


class Overlay:
    def __init__(self, examples: Sequence[Example] = (), features: Features | None = None):
        self.examples = tuple(examples)
        self.features = features

    def __len__(self) -> int:
        return len(self.examples)

    def with_added(self, examples: Sequence[Example], features: Features) -> Overlay:
        if self.features is None or not self.examples:
            return Overlay(examples, features)
        if sp.issparse(features):
            stacked = sp.vstack([self.features, features]).tocsr()
        else:
            stacked = np.vstack([np.asarray(self.features), np.asarray(features)])
        return Overlay((*self.examples, *examples), stacked)

    def nearest(self, queries: Features) -> list[Match | None]:
        """The closest run-time example per query row (None when there are none)."""
        n = queries.shape[0]
        if self.features is None or not self.examples:
            return [None] * n
        sims: FloatArray = cosine(queries, self.features)
        last = sims.shape[1] - 1
        # ties go to the most recent example (a relabelled text takes its newest label)
        best: npt.NDArray[np.int64] = last - sims[:, ::-1].argmax(axis=1)
        return [
            Match(self.examples[int(j)].intent, float(np.clip(sims[i, j], 0.0, 1.0)))
            for i, j in enumerate(best)
        ]
