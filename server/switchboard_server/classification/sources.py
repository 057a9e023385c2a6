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


def resolve_paths(
    settings: ClassificationSettings, artifacts: ArtifactStore
) -> tuple[Path, Path | None]:
    """(train, held-out) paths by precedence: settings, ``active.json``, bundled HWU64."""
    if settings.train_path is not None:
        return settings.train_path, settings.validation_path
    active = artifacts.read_active()
    if active and isinstance(active.get("train_path"), str):
        held = active.get("validation_path")
        return Path(active["train_path"]), Path(held) if isinstance(held, str) else None
    held_default = settings.validation_path or bundled_hwu64("valid")
    return bundled_hwu64("train"), held_default
