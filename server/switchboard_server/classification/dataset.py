"""Training data: JSON Lines of ``{"text": "...", "intent": "l1/l2[/l3]"}``.

A flat label (``"card_arrival"``) is a one-level hierarchy and ``"oos"`` marks an
out-of-scope example. Loading is all-or-nothing: every bad line is collected
and reported with its file and line number before anything is returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from switchboard_server.classification.taxonomy import OOS, intent_problem

MAX_TEXT_CHARS = 4096
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled utterance."""

    text: str
    intent: str

    @property
    def in_scope(self) -> bool:
        return self.intent != OOS


class DatasetError(ValueError):
    """A dataset file has bad lines; ``problems`` lists ``file:line: why``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        shown = list(self.problems[:MAX_REPORTED_PROBLEMS])
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more")
        super().__init__("invalid dataset:\n  " + "\n  ".join(shown))


def parse_line(raw: str) -> Example | str:
    """An Example, or the reason the line is bad."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg})"
    if not isinstance(record, dict):
        return "must be a JSON object"
    text, intent = record.get("text"), record.get("intent")
    if not isinstance(text, str) or not text.strip():
        return "'text' must be a non-empty string"
    if len(text) > MAX_TEXT_CHARS:
        return f"'text' is longer than {MAX_TEXT_CHARS} characters"
    if not isinstance(intent, str):
        return "'intent' must be a string"
    if intent != OOS:
        problem = intent_problem(intent)
        if problem is not None:
            return f"'intent' {intent!r} {problem}"
    return Example(text.strip(), intent)


def load_jsonl(path: Path) -> list[Example]:
    """Every example of ``path``; raises DatasetError naming each bad line."""
    examples: list[Example] = []
    problems: list[str] = []
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError([f"{path}: cannot read ({exc})"]) from exc
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        parsed = parse_line(raw)
        if isinstance(parsed, str):
            problems.append(f"{path}:{number}: {parsed}")
        else:
            examples.append(parsed)
    if problems:
        raise DatasetError(problems)
    if not examples:
        raise DatasetError([f"{path}: holds no examples"])
    return examples


def fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the examples in order: keys the model artifact cache."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.text.encode("utf-8"))
        digest.update(b"\x1f")
        digest.update(example.intent.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()
