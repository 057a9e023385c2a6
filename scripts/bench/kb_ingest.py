"""Knowledge-base ingest through the service's domain, versions side by side.

Each round runs every variant once, in turn, in a fresh process
(``_kb_ingest``): a slow spell of the machine falls on all of them alike. A variant
is ``name=TREE`` or ``name=TREE:SYNC``, optionally followed by ``+VAR=VALUE`` settings:
``TREE`` is put first on ``PYTHONPATH`` (``.`` for this checkout's code, or the
``server`` directory of another version, e.g. from ``git archive``), ``SYNC`` sets
``SWITCHBOARD_CONTEXT_SQLITE_SYNCHRONOUS``, and each ``VAR`` is set in the child's
environment (e.g. ``+SWITCHBOARD_CONTEXT_INDEX_WRITER_THREADS=2``).

    git archive 9ba8725 server/switchboard_server | tar -x -C /tmp/kb-base
    KB_INGEST_VARIANTS=before=/tmp/kb-base/server,after=. \\
        .venv/bin/python -m scripts.bench kb_ingest

``KB_INGEST_SIZE`` (100000) passages, ``KB_INGEST_ROUNDS`` (3) rounds; medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any


def _variants() -> list[tuple[str, str, str, dict[str, str]]]:
    spec = os.environ.get("KB_INGEST_VARIANTS", "current=.")
    out = []
    for item in spec.split(","):
        name, _, where = item.partition("=")
        where, *settings = where.split("+")
        tree, _, sync = where.partition(":")
        extra = dict(s.split("=", 1) for s in settings)
        out.append((name, tree, sync, extra))
    return out


def _once(size: int, tree: str, sync: str, extra: dict[str, str]) -> dict[str, float]:
    env = {**os.environ, **extra, "PYTHONPATH": os.pathsep.join([tree, "."])}
    env["SWITCHBOARD_LOG_LEVEL"] = "warning"
    if sync:
        env["SWITCHBOARD_CONTEXT_SQLITE_SYNCHRONOUS"] = sync
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench._kb_ingest", str(size)],
        env=env, capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run() -> dict[str, Any]:
    size = int(os.environ.get("KB_INGEST_SIZE", "100000"))
    rounds = int(os.environ.get("KB_INGEST_ROUNDS", "3"))
    variants = _variants()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in variants}
    for _ in range(rounds):
        for name, tree, sync, extra in variants:
            runs[name].append(_once(size, tree, sync, extra))
            print(name, runs[name][-1], flush=True)
    results: dict[str, Any] = {"passages": size, "rounds": rounds}
    for name, measured in runs.items():
        results[name] = {
            "ingest_per_s": round(statistics.median(r["ingest_per_s"] for r in measured)),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in measured), 2),
            "runs": [r["ingest_per_s"] for r in measured],
        }
    first = variants[0][0]
    for name in runs:
        results[name]["vs_" + first] = round(
            results[name]["ingest_per_s"] / max(results[first]["ingest_per_s"], 1), 2
        )
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    return results
