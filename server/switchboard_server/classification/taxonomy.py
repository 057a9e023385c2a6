"""Intent paths (``l1[/l2[/l3]]``), the out-of-scope label and hierarchy confidences."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

OOS = "oos"
LEVEL_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_LEVELS = 3


def split_intent(path: str) -> tuple[str, str, str]:
    """'alarm/set' -> ('alarm', 'set', ''); a flat label is a one-level hierarchy."""
    parts = path.split("/")
    parts += [""] * (MAX_LEVELS - len(parts))
    return parts[0], parts[1], parts[2]


def intent_problem(path: str) -> str | None:
    """Why ``path`` is not a valid intent label, or None when it is."""
    parts = path.split("/")
    if len(parts) > MAX_LEVELS:
        return f"has {len(parts)} levels; at most {MAX_LEVELS} are allowed"
    for part in parts:
        if not LEVEL_PATTERN.fullmatch(part):
            return "each level must be 1-64 of lowercase a-z, 0-9, '_' and '-'"
    return None


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """The levels of an intent with the summed probability of each level."""

    l1: str
    l1_confidence: float
    l2: str
    l2_confidence: float
    l3: str
    l3_confidence: float


class HierarchyIndex:
    """Sums leaf probabilities into l1 and l1/l2 confidences for a fixed class list."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self._levels = [split_intent(c) for c in self.classes]
        l1_names = sorted({lv[0] for lv in self._levels})
        l2_names = sorted({f"{lv[0]}/{lv[1]}" for lv in self._levels if lv[1]})
        self._l1_index = {name: i for i, name in enumerate(l1_names)}
        self._l2_index = {name: i for i, name in enumerate(l2_names)}
        self._l1_member = np.zeros((len(self.classes), len(l1_names)), dtype=np.float32)
        self._l2_member = np.zeros((len(self.classes), max(len(l2_names), 1)), dtype=np.float32)
        for row, (l1, l2, _l3) in enumerate(self._levels):
            self._l1_member[row, self._l1_index[l1]] = 1.0
            if l2:
                self._l2_member[row, self._l2_index[f"{l1}/{l2}"]] = 1.0

    def hierarchy(self, probabilities: npt.NDArray[np.float32], intent: str) -> Hierarchy:
        """Hierarchy of ``intent`` given one row of leaf probabilities."""
        l1, l2, l3 = split_intent(intent)
        l1_sums = probabilities @ self._l1_member
        l1_conf = float(l1_sums[self._l1_index[l1]]) if l1 in self._l1_index else 0.0
        l2_conf = 0.0
        if l2:
            key = f"{l1}/{l2}"
            if key in self._l2_index:
                l2_conf = float((probabilities @ self._l2_member)[self._l2_index[key]])
        l3_conf = 0.0
        if l3 and intent in self.classes:
            l3_conf = float(probabilities[self.classes.index(intent)])
        return Hierarchy(l1, l1_conf, l2, l2_conf, l3, l3_conf)


@dataclass(frozen=True, slots=True)
class IntentCount:
    """A leaf intent with its base and run-time example counts."""

    path: str
    example_count: int
    runtime_example_count: int
    display_name: str = ""  # the training data's own label, when it was normalized


def intent_counts(
    base: Iterable[str], runtime: Iterable[str], renamed: Mapping[str, str] | None = None
) -> list[IntentCount]:
    """Every in-scope leaf intent of the base and run-time labels, sorted by path."""
    names = renamed or {}
    base_counts = Counter(label for label in base if label != OOS)
    runtime_counts = Counter(label for label in runtime if label != OOS)
    paths = sorted(set(base_counts) | set(runtime_counts))
    return [IntentCount(p, base_counts[p], runtime_counts[p], names.get(p, "")) for p in paths]
