"""Which data the service trains on: a setting, else what ``switchboard train`` used,
else the bundled HWU64 train split (with its validation split held out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.formats import FORMATS, DatasetSpec, Format, load_dataset
from switchboard_server.classification.labels import LabelMap
from switchboard_server.classification.settings import ClassificationSettings


def bundled_hwu64(split: str) -> Path:
    """Path of the bundled HWU64 split (``train``, ``valid`` or ``test``)."""
    root = resources.files("switchboard_server.classification").joinpath("data/hwu64")
    return Path(str(root.joinpath(f"{split}.jsonl")))


@dataclass(frozen=True)
class DataSource:
    """Base training data and the held-out data (None: split from training)."""

    train_path: Path
    heldout_path: Path | None
    train: list[Example]
    heldout: list[Example] | None
    labels: dict[str, str] = field(default_factory=dict)  # normalized -> original, if changed

    def describe(self) -> dict[str, str | None]:
        held = str(self.heldout_path) if self.heldout_path else None
        return {"train_path": str(self.train_path), "validation_path": held}


def load_source(
    train_path: Path, heldout_path: Path | None, spec: DatasetSpec | None = None
) -> DataSource:
    """Both files read with ``spec``; their labels normalized into one map."""
    labels = LabelMap()
    train = load_dataset(train_path, spec, labels)
    heldout = load_dataset(heldout_path, spec, labels) if heldout_path is not None else None
    return DataSource(train_path, heldout_path, train, heldout, labels.renamed)


def spec_from_settings(settings: ClassificationSettings) -> DatasetSpec:
    fmt = None if settings.data_format == "auto" else settings.data_format
    return DatasetSpec(fmt, settings.text_column, settings.label_column)


def spec_from_record(record: dict[str, Any]) -> DatasetSpec:
    """The spec ``switchboard train`` recorded in ``active.json`` (absent: by extension)."""

    def text(key: str) -> str | None:
        value = record.get(key)
        return value if isinstance(value, str) else None

    fmt = text("format")
    known: Format | None = fmt if fmt in FORMATS else None  # type: ignore[assignment]
    return DatasetSpec(known, text("text_column"), text("label_column"))


@dataclass(frozen=True)
class Choice:
    """Where the service's data come from and which backend trains on them."""

    train_path: Path
    heldout_path: Path | None
    backend: str
    origin: str  # "settings" | "switchboard train" | "bundled"
    spec: DatasetSpec = field(default_factory=DatasetSpec)


def resolve(settings: ClassificationSettings, artifacts: ArtifactStore) -> Choice:
    """Data by precedence: settings, ``active.json`` (``switchboard train``), bundled HWU64.

    The backend is the setting when it was set explicitly, else the one
    ``switchboard train`` used, else the default.
    """
    backend = settings.backend
    if settings.train_path is not None:
        return Choice(
            settings.train_path,
            settings.validation_path,
            backend,
            "settings",
            spec_from_settings(settings),
        )
    active = artifacts.read_active()
    if active and isinstance(active.get("train_path"), str):
        held = active.get("validation_path")
        if "backend" not in settings.model_fields_set and isinstance(active.get("backend"), str):
            backend = active["backend"]
        return Choice(
            Path(active["train_path"]),
            Path(held) if isinstance(held, str) else None,
            backend,
            "switchboard train",
            spec_from_record(active),
        )
    held_default = settings.validation_path or bundled_hwu64("valid")
    return Choice(bundled_hwu64("train"), held_default, backend, "bundled")
