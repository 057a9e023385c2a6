"""Which data the service trains on: a setting, else what ``switchboard train`` used,
else the bundled HWU64 train split (with its validation split held out)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.dataset import Example, load_jsonl
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

    def describe(self) -> dict[str, str | None]:
        held = str(self.heldout_path) if self.heldout_path else None
        return {"train_path": str(self.train_path), "validation_path": held}


def load_source(train_path: Path, heldout_path: Path | None) -> DataSource:
    heldout = load_jsonl(heldout_path) if heldout_path is not None else None
    return DataSource(train_path, heldout_path, load_jsonl(train_path), heldout)


@dataclass(frozen=True)
class Choice:
    """Where the service's data come from and which backend trains on them."""

    train_path: Path
    heldout_path: Path | None
    backend: str
    origin: str  # "settings" | "switchboard train" | "bundled"


def resolve(settings: ClassificationSettings, artifacts: ArtifactStore) -> Choice:
    """Data by precedence: settings, ``active.json`` (``switchboard train``), bundled HWU64.

    The backend is the setting when it was set explicitly, else the one
    ``switchboard train`` used, else the default.
    """
    backend = settings.backend
    if settings.train_path is not None:
        return Choice(settings.train_path, settings.validation_path, backend, "settings")
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
        )
    held_default = settings.validation_path or bundled_hwu64("valid")
    return Choice(bundled_hwu64("train"), held_default, backend, "bundled")
