"""Training data: examples, and JSON Lines of ``{"text": "...", "intent": "l1/l2[/l3]"}``.

A flat label (``"card_arrival"``) is a one-level hierarchy and ``"oos"`` marks an
out-of-scope example. Labels are normalized into the label grammar (``labels.py``).
Loading is all-or-nothing: every bad line is collected and reported with its file
and line number before anything is returned. CSV and Rasa NLU YAML: ``formats.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from switchboard_server.classification.labels import LabelMap
from switchboard_server.classification.taxonomy import OOS

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


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a dataset file as read, before its text and label are checked."""

    where: str  # "file:line"
    text: object
    label: object
    names: tuple[str, str] = ("'text'", "'intent'")  # how problems name the two fields


def check_record(record: Record, labels: LabelMap) -> Example | str:
    """An Example with its label normalized, or the reason the line is bad."""
    text, label = record.text, record.label
    text_name, label_name = record.names
    if not isinstance(text, str) or not text.strip():
        return f"{text_name} must be a non-empty string"
    if len(text) > MAX_TEXT_CHARS:
        return f"{text_name} is longer than {MAX_TEXT_CHARS} characters"
    if not isinstance(label, str) or not label.strip():
        return f"{label_name} must be a non-empty string"
    resolved = labels.resolve(label, record.where)
    if isinstance(resolved, tuple):
        return resolved[0]
    return Example(text.strip(), resolved)


def examples_of(path: Path, records: Iterable[Record | str], labels: LabelMap) -> list[Example]:
    """Check every record (a ``str`` is a line already known to be bad: ``file:line: why``);
    all-or-nothing: raises DatasetError listing every bad line."""
    examples: list[Example] = []
    problems: list[str] = []
    for record in records:
        if isinstance(record, str):
            problems.append(record)
            continue
        checked = check_record(record, labels)
        if isinstance(checked, str):
            problems.append(f"{record.where}: {checked}")
        else:
            examples.append(checked)
    if problems:
        raise DatasetError(problems)
    if not examples:
        raise DatasetError([f"{path}: holds no examples"])
    return examples


def read_text(path: Path, encoding: str = "utf-8") -> str:
    try:
        return path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError([f"{path}: cannot read ({exc})"]) from exc


def jsonl_records(
    path: Path, text_key: str = "text", label_key: str = "intent"
) -> list[Record | str]:
    """The records of a JSON Lines file (blank lines skipped)."""
    records: list[Record | str] = []
    for number, raw in enumerate(read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            records.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            records.append(f"{where}: must be a JSON object")
            continue
        names = (repr(text_key), repr(label_key))
        records.append(Record(where, record.get(text_key), record.get(label_key), names))
    return records


def load_jsonl(path: Path, labels: LabelMap | None = None) -> list[Example]:
    """Every example of ``path`` with labels normalized into ``labels`` (a fresh map when
    None); raises DatasetError naming each bad line."""
    return examples_of(path, jsonl_records(path), labels if labels is not None else LabelMap())


def fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the examples in order: keys the model artifact cache."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.text.encode("utf-8"))
        digest.update(b"\x1f")
        digest.update(example.intent.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()
