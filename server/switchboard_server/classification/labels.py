"""Labels of real datasets mapped onto the label grammar, and the map kept with the model.

Public datasets label intents as they like (``Refund_not_showing_up``,
``reverted_card_payment?``, ``Book Flight``). :func:`normalize_label` maps such a label
onto the grammar of ``taxonomy.py`` (levels of lowercase ``[a-z0-9_-]``, at most three,
``/`` between levels): letters are lowercased and stripped of accents, every other run
of characters becomes one ``_``, and ``_``/``-`` at the ends of a level go. A
:class:`LabelMap` remembers each label that changed, so answers can be shown in the
dataset's own words, and refuses two labels that would become one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from switchboard_server.classification.taxonomy import MAX_LEVELS, OOS, intent_problem

_OUTSIDE_GRAMMAR = re.compile(r"[^a-z0-9_-]+")
MAX_LEVEL_CHARS = 64


def normalize_label(raw: str) -> str | None:
    """``raw`` in the label grammar, or None when nothing of it is left."""
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    levels = []
    for part in ascii_text.strip().lower().split("/"):
        level = _OUTSIDE_GRAMMAR.sub("_", part.strip()).strip("_-")[:MAX_LEVEL_CHARS]
        if not level:
            return None
        levels.append(level.rstrip("_-"))
    label = "/".join(levels)
    return label if intent_problem(label) is None else None


class LabelMap:
    """Normalized labels of one or more files, each with the raw label it came from.

    ``resolve`` is called once per labelled line; it returns the normalized label or
    the reason the line is bad (a label with nothing left, too deep, or a clash).
    """

    def __init__(self) -> None:
        self._origin: dict[str, tuple[str, str]] = {}  # normalized -> (raw, where first seen)

    def resolve(self, raw: str, where: str) -> str | tuple[str]:
        """The normalized label, or ``(why,)`` when the line must be reported."""
        stripped = raw.strip()
        if stripped.lower() == OOS:
            return OOS
        label = normalize_label(stripped)
        if label is None:
            levels = len(stripped.split("/"))
            if levels > MAX_LEVELS:
                return (f"label {raw!r} has {levels} levels; at most {MAX_LEVELS} are allowed",)
            return (f"label {raw!r} has no letters or digits in some level",)
        seen = self._origin.get(label)
        if seen is None:
            self._origin[label] = (stripped, where)
        elif seen[0] != stripped:
            return (
                f"labels {seen[0]!r} ({seen[1]}) and {stripped!r} both normalize to "
                f"{label!r}; rename one of them",
            )
        return label

    @property
    def renamed(self) -> dict[str, str]:
        """normalized -> original, for every label that changed (sorted by label)."""
        return {label: raw for label, (raw, _) in sorted(self._origin.items()) if raw != label}


def display_name(renamed: Mapping[str, str], intent: str) -> str:
    """The dataset's own label of ``intent``; empty when it needed no change."""
    return renamed.get(intent, "")
