"""Model artifacts on disk, keyed by the hash of data and configuration.

``<data_dir>/models/<key>.pkl`` holds a pickled :class:`TrainedModel` (only files this
service wrote are ever loaded). Writes are atomic: temp file, fsync, rename, fsync
of the directory. ``active.json`` records the data ``switchboard train`` used, so
the service loads that model on its next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import structlog

from switchboard_server.classification.backends.base import EncoderFactory
from switchboard_server.classification.model import TrainedModel

log = structlog.get_logger(__name__)


def write_atomic(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` so a crash leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ArtifactStore:
    """Trained models of one data directory."""

    def __init__(self, directory: Path, *, keep: int) -> None:
        self.directory = directory
        self.models = directory / "models"
        self.keep = keep

    def path(self, key: str) -> Path:
        return self.models / f"{key}.pkl"

    def load(self, key: str, encoder_factory: EncoderFactory) -> TrainedModel | None:
        """The cached model for ``key``, or None (missing or unreadable: retrain)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            model = pickle.loads(path.read_bytes())
        except Exception as exc:
            log.warning("artifact.unreadable", key=key[:12], error=type(exc).__name__)
            return None
        if not isinstance(model, TrainedModel) or model.artifact_key != key:
            log.warning("artifact.mismatch", key=key[:12])
            return None
        model.scorer.bind(encoder_factory)
        os.utime(path)  # most recently used survives pruning
        return model

    def save(self, model: TrainedModel) -> Path:
        path = self.path(model.artifact_key)
        write_atomic(path, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        self._prune(protect=path)
        return path

    def _prune(self, protect: Path) -> None:
        files = sorted(self.models.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.keep :]:
            if old != protect:
                with contextlib.suppress(OSError):
                    old.unlink()

    @property
    def active_path(self) -> Path:
        return self.directory / "active.json"

    def write_active(self, record: dict[str, Any]) -> None:
        write_atomic(self.active_path, json.dumps(record, indent=2).encode())

    def read_active(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.active_path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None
