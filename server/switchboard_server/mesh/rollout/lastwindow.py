"""The latest window ``rollout watch`` judged, kept on disk so that ``rollout status``
(another process) shows it beside the since-start figures while a watch runs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from switchboard_server.mesh.rollout.status import VariantStats


def _window_file(root: Path, service: str) -> Path:
    return root / f"window-{service}.json"


def save_window(root: Path, service: str, window: dict[str, VariantStats]) -> None:
    """``watch``'s latest window, for ``status`` to show beside the since-start figures."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {"at": time.time(), "variants": {name: asdict(s) for name, s in window.items()}}
    path = _window_file(root, service)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def load_window(
    root: Path, service: str, max_age_s: float
) -> tuple[dict[str, VariantStats], float] | None:
    """``watch``'s latest window and its age in seconds; None when no watch wrote one
    within ``max_age_s``."""
    try:
        doc = json.loads(_window_file(root, service).read_text())
    except (OSError, ValueError):
        return None
    age = time.time() - float(doc["at"])
    if age > max_age_s:
        return None
    window = {}
    for name, fields in doc["variants"].items():
        for key in ("latency_buckets", "confidence_buckets"):
            fields[key] = {float(le): n for le, n in fields[key].items()}
        window[name] = VariantStats(**fields)
    return window, age
