"""The cost of mutual TLS between the sidecars: the same mesh with mTLS and RBAC (the
default) and with ``--insecure`` (plaintext), side by side in one run.

Each round starts one mesh of each kind in turn (``switchboard up --detach`` on ports of
its own, tracing export off) and puts the same open-loop load of Chat turns through its
edge with the engine of ``switchboard load`` (see :mod:`scripts.bench.mesh` for what is
measured and how); the kinds alternate and the medians over the rounds are reported,
with the ratio mTLS / insecure of each. The hops that change are edge -> orchestration
and orchestration -> classification/context (and the active health checks on them); an
app and its own sidecar talk plaintext on loopback either way.

    python -m scripts.bench mtls   # SWITCHBOARD_BENCH_MTLS_ROUNDS=5 (default 3)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from scripts.bench._proc import StolenTime
from scripts.bench.mesh import RATE, SECONDS, measure_mesh

ROUNDS = int(os.environ.get("SWITCHBOARD_BENCH_MTLS_ROUNDS", "3"))
KINDS = {
    "mtls": {"SWITCHBOARD_MESH_INSECURE": "false"},
    "insecure": {"SWITCHBOARD_MESH_INSECURE": "true"},
}
FIGURES = (
    "envoy_cpu_ms_per_turn",
    "envoy_cpu_ms_per_traversal_excl_idle",
    "envoy_idle_cpu_ms_per_s",
    "app_cpu_ms_per_turn",
    "p50_ms",
    "p99_ms",
)


async def _run() -> dict[str, Any]:
    stolen = StolenTime()
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-mtls-") as name:
        tmp = Path(name)
        for round_ in range(ROUNDS):
            order = list(KINDS) if round_ % 2 == 0 else list(reversed(KINDS))
            for kind in order:
                where = tmp / f"{kind}-{round_}"
                where.mkdir()
                runs[kind].append(await measure_mesh(where, where / "data", KINDS[kind]))
    medians = {
        kind: {f: statistics.median(r[f] for r in results) for f in FIGURES}
        | {
            "failed": sum(sum(r["errors"].values()) for r in results),
            "turns": sum(r["turns"] for r in results),
        }
        for kind, results in runs.items()
    }
    ratios = {
        f: round(medians["mtls"][f] / medians["insecure"][f], 3)
        for f in FIGURES
        if medians["insecure"][f]
    }
    return {
        "rate_turns_per_s": RATE,
        "seconds": SECONDS,
        "rounds": ROUNDS,
        "cores": os.cpu_count(),
        "stolen_cpu_share": stolen.share(),
        "median": medians,
        # each run's latency and failures: one slow spell of a shared host shows here
        "runs": {
            kind: [
                {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "errors": r["errors"]}
                for r in results
            ]
            for kind, results in runs.items()
        },
        "ratio_mtls_over_insecure": ratios,
    }


def run() -> dict[str, Any]:
    return asyncio.run(_run())


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
