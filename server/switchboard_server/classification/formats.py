"""Dataset files in three formats: JSON Lines, CSV and Rasa NLU YAML.

The format comes from the extension (``.jsonl``/``.json`` → JSON Lines, ``.csv``/``.tsv``
→ CSV, ``.yml``/``.yaml`` → Rasa NLU) unless given. Every format goes through the same
check (``dataset.examples_of``): texts non-empty and bounded, labels normalized into one
:class:`LabelMap`, every bad line reported as ``file:line: why``.

* CSV: a header row; the text and label columns are ``text`` and ``label`` unless named.
* Rasa NLU (2.x/3.x): ``nlu: [{intent: NAME, examples: "- text\\n- text"}]``; entity
  annotations ``[text](entity)`` and ``[text]{"entity": ...}`` keep their text; other
  entries (synonym, regex, lookup) are not examples and are skipped.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import yaml

from switchboard_server.classification.dataset import (
    DatasetError,
    Example,
    Record,
    examples_of,
    jsonl_records,
    read_text,
)
from switchboard_server.classification.labels import LabelMap

Format = Literal["jsonl", "csv", "rasa"]
FORMATS: tuple[str, ...] = get_args(Format)
EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".yml": "rasa",
    ".yaml": "rasa",
}
RASA_NAMES = ("the example", "the intent")
_ENTITY = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True)
class DatasetSpec:
    """How to read a dataset file: the format (None: by extension) and, for CSV and
    JSON Lines, the text and label field names (None: the format's default)."""

    format: Format | None = None
    text_column: str | None = None
    label_column: str | None = None

    def format_of(self, path: Path) -> Format:
        if self.format is not None:
            return self.format
        found = EXTENSIONS.get(path.suffix.lower())
        if found is None:
            known = ", ".join(sorted(EXTENSIONS))
            raise DatasetError(
                [f"{path}: unknown extension {path.suffix!r} (known: {known}); pass --format"]
            )
        return found

    def as_record(self) -> dict[str, str | None]:
        return {
            "format": self.format,
            "text_column": self.text_column,
            "label_column": self.label_column,
        }


def load_dataset(
    path: Path, spec: DatasetSpec | None = None, labels: LabelMap | None = None
) -> list[Example]:
    """Every example of ``path``; labels are normalized into ``labels``."""
    spec = spec or DatasetSpec()
    labels = labels if labels is not None else LabelMap()
    kind = spec.format_of(path)
    if kind == "csv":
        records = csv_records(path, spec.text_column or "text", spec.label_column or "label")
    elif kind == "rasa":
        records = rasa_records(path)
    else:
        records = jsonl_records(path, spec.text_column or "text", spec.label_column or "intent")
    return examples_of(path, records, labels)


def csv_records(path: Path, text_column: str, label_column: str) -> list[Record | str]:
    """Rows of a CSV file with a header (a ``.tsv`` file is tab-separated)."""
    content = read_text(path, encoding="utf-8-sig")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError([f"{path}: holds no examples"]) from None
    except csv.Error as exc:
        raise DatasetError([f"{path}:1: not valid CSV ({exc})"]) from exc
    missing = [c for c in (text_column, label_column) if c not in header]
    if missing:
        raise DatasetError(
            [
                f"{path}:1: the header {header} has no column {', '.join(map(repr, missing))}; "
                "name the columns with --text-column / --label-column"
            ]
        )
    text_at, label_at = header.index(text_column), header.index(label_column)
    names = (f"column {text_column!r}", f"column {label_column!r}")
    records: list[Record | str] = []
    line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            records.append(f"{path}:{reader.line_num}: not valid CSV ({exc})")
            break
        start, line = line + 1, reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            records.append(f"{path}:{start}: has {len(row)} fields; the header has {len(header)}")
            continue
        records.append(Record(f"{path}:{start}", row[text_at], row[label_at], names))
    return records


def strip_entities(text: str) -> str:
    """``"fly to [Paris](city)"`` → ``"fly to Paris"``."""
    return _ENTITY.sub(r"\1", text)


def rasa_records(path: Path) -> list[Record | str]:
    """The examples of a Rasa NLU training-data file, with their line numbers."""
    try:
        root = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DatasetError([f"{path}{line}: not valid YAML ({exc})"]) from exc
    nlu = _mapping_value(root, "nlu")
    if not isinstance(nlu, yaml.SequenceNode):
        raise DatasetError([f"{path}: no 'nlu:' list of intents (a Rasa NLU file has one)"])
    records: list[Record | str] = []
    for entry in nlu.value:
        where = f"{path}:{entry.start_mark.line + 1}"
        if not isinstance(entry, yaml.MappingNode):
            records.append(f"{where}: an 'nlu' entry must be a mapping")
            continue
        intent = _mapping_value(entry, "intent")
        if intent is None:
            continue  # synonym, regex, lookup: not examples
        if not isinstance(intent, yaml.ScalarNode) or not intent.value.strip():
            records.append(f"{where}: 'intent' must be a name")
            continue
        examples = _mapping_value(entry, "examples")
        if isinstance(examples, yaml.ScalarNode):
            records.extend(_block_examples(path, examples, intent.value))
        elif isinstance(examples, yaml.SequenceNode):  # Rasa 3: [{text: ..., metadata: ...}]
            for item in examples.value:
                text = _mapping_value(item, "text") if isinstance(item, yaml.MappingNode) else item
                at = f"{path}:{item.start_mark.line + 1}"
                if not isinstance(text, yaml.ScalarNode):
                    records.append(f"{at}: an example must be a text")
                else:
                    text_value = strip_entities(text.value.strip())
                    records.append(Record(at, text_value, intent.value, RASA_NAMES))
        else:
            records.append(f"{where}: intent {intent.value!r} has no 'examples'")
    return records


def _block_examples(path: Path, node: yaml.ScalarNode, intent: str) -> list[Record | str]:
    """The ``- text`` lines of an ``examples: |`` block."""
    first = node.start_mark.line + (1 if node.style in ("|", ">") else 0)
    records: list[Record | str] = []
    for offset, raw in enumerate(node.value.splitlines()):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}:{first + offset + 1}"
        if not line.startswith("-"):
            records.append(f"{where}: an example line must start with '- '")
            continue
        records.append(Record(where, strip_entities(line[1:].strip()), intent, RASA_NAMES))
    return records


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            found: yaml.Node = v
            return found
    return None
