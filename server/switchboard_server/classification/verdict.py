"""From probabilities (and an overlay match) to a verdict: intent, hierarchy, alternatives.

Rules:

* A run-time example at least ``overlay_min_similarity`` similar decides the intent
  (confidence = that similarity, or the model's probability if higher).
* Otherwise the top intent wins if its probability reaches the threshold; below it the
  verdict is ``oos`` with ``confidence`` = the best in-scope probability.
* ``alternatives`` is the top-k ranking of the model, best first; it includes the
  winning intent, and when out of scope its first entry is the best in-scope guess.
* An ``oos`` verdict's hierarchy is ``l1="oos"`` with the verdict's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from switchboard_server.classification.backends.base import FloatArray
from switchboard_server.classification.overlay import Match
from switchboard_server.classification.taxonomy import OOS, Hierarchy, HierarchyIndex


@dataclass(frozen=True, slots=True)
class Verdict:
    intent: str
    confidence: float
    hierarchy: Hierarchy
    alternatives: tuple[tuple[str, float], ...]
    out_of_scope: bool
    model_version: str
    threshold: float
    overlay_match: bool
    overlay_similarity: float
    inference_ms: float
    backend: str
    display_name: str = ""  # the training data's own label of intent, when it was normalized


@dataclass(frozen=True, slots=True)
class Options:
    """Per-request options after validation (threshold None = model default)."""

    threshold: float | None = None
    top_k: int = 3
    include_debug: bool = False


def decide(
    proba: FloatArray,
    index: HierarchyIndex,
    *,
    threshold: float,
    top_k: int,
    match: Match | None,
    overlay_min_similarity: float,
) -> tuple[str, float, Hierarchy, tuple[tuple[str, float], ...], bool, bool]:
    """(intent, confidence, hierarchy, alternatives, out_of_scope, overlay_decided)."""
    order = np.argsort(-proba, kind="stable")[: max(top_k, 1)]
    alternatives = tuple((index.classes[i], float(proba[i])) for i in order)
    best_intent, best_p = alternatives[0]
    if match is not None and match.similarity >= overlay_min_similarity:
        if match.intent == OOS:
            return (*_oos(best_p, alternatives), True)
        model_p = (
            float(proba[index.classes.index(match.intent)])
            if (match.intent in index.classes)
            else 0.0
        )
        confidence = max(match.similarity, model_p)
        h = index.hierarchy(proba, match.intent)
        hierarchy = Hierarchy(
            h.l1,
            max(h.l1_confidence, confidence),
            h.l2,
            max(h.l2_confidence, confidence) if h.l2 else 0.0,
            h.l3,
            confidence if h.l3 else 0.0,
        )
        return match.intent, confidence, hierarchy, alternatives, False, True
    if best_p < threshold:
        return (*_oos(best_p, alternatives), False)
    hierarchy = index.hierarchy(proba, best_intent)
    return best_intent, best_p, hierarchy, alternatives, False, False


def _oos(
    confidence: float, alternatives: tuple[tuple[str, float], ...]
) -> tuple[str, float, Hierarchy, tuple[tuple[str, float], ...], bool]:
    hierarchy = Hierarchy(OOS, confidence, "", 0.0, "", 0.0)
    return OOS, confidence, hierarchy, alternatives, True
