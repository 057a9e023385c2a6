"""A trained model: the scorer plus what serving needs to know about it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib.metadata import version
from typing import Any

from switchboard_server.classification.backends.base import Scorer
from switchboard_server.classification.dataset import Example, fingerprint
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.taxonomy import HierarchyIndex

ARTIFACT_FORMAT = 4


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes a trained model besides its data (part of the artifact key)."""

    backend: str
    tfidf_c: float
    char_min_df: int
    embeddings_c: float
    hybrid_weight: float
    embedding_max_tokens: int
    target_acceptance: float
    min_threshold: float
    max_threshold: float
    holdout_fraction: float

    @classmethod
    def from_settings(
        cls, settings: ClassificationSettings, backend: str | None = None
    ) -> TrainConfig:
        return cls(
            backend=backend or settings.backend,
            tfidf_c=settings.tfidf_c,
            char_min_df=settings.tfidf_char_min_df,
            embeddings_c=settings.embeddings_c,
            hybrid_weight=settings.hybrid_weight,
            embedding_max_tokens=settings.embedding_max_tokens,
            target_acceptance=settings.target_in_scope_acceptance,
            min_threshold=settings.min_confidence_threshold,
            max_threshold=settings.max_confidence_threshold,
            holdout_fraction=settings.holdout_fraction,
        )


def artifact_key(
    config: TrainConfig,
    train: list[Example],
    heldout: list[Example] | None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """sha256 of the artifact format, library version, config, data and label map."""
    material = {
        "labels": dict(sorted((labels or {}).items())),
        "format": ARTIFACT_FORMAT,
        "sklearn": version("scikit-learn"),
        "config": asdict(config),
        "train": fingerprint(train),
        "heldout": fingerprint(heldout) if heldout is not None else None,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass
class TrainedModel:
    """A scorer with its tuned threshold and provenance."""

    scorer: Scorer
    backend: str
    threshold: float
    artifact_key: str
    trained_at: datetime
    training_example_count: int
    # normalized label -> the dataset's own label, for labels that changed (labels.py)
    labels: dict[str, str] = field(default_factory=dict)
    _hierarchy: HierarchyIndex | None = field(default=None, repr=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.scorer.classes

    @property
    def version(self) -> str:
        return f"{self.backend}-{self.artifact_key[:12]}"

    @property
    def hierarchy(self) -> HierarchyIndex:
        if self._hierarchy is None:
            self._hierarchy = HierarchyIndex(self.classes)
        return self._hierarchy

    def display_name(self, intent: str) -> str:
        """The training data's own label of ``intent``; empty when it was not changed."""
        return self.labels.get(intent, "")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_hierarchy"] = None
        return state
