"""``python -m scripts.chaos``: every scenario in turn on one mesh, a table, a JSON file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from scripts.chaos import scenarios
from scripts.chaos.diskfull import run_disk_full
from scripts.chaos.mesh import chaos_mesh
from scripts.chaos.runner import run_burst, run_scenario, settle

RATE = 40.0
BEFORE_S = 5.0
DURATION_S = 30.0
SESSIONS = 40
TIMEOUT_S = 5.0
BETWEEN_S = 6.0

COLUMNS = ("scenario", "sent", "failed", "degraded", "lost", "doubled", "failed_committed")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(results: list[dict[str, Any]]) -> str:
    head = [*COLUMNS, "memory dbl/miss", "p50 b/d/a ms", "p99 b/d/a ms"]
    rows = [head]
    for r in results:
        lat = r.get("latency", {})
        phases = [lat.get(p, {}) for p in ("before", "during", "after")]
        rows.append(
            [
                *(str(r.get(c, "-")) for c in COLUMNS),
                f"{r.get('memory_doubled', '-')}/{r.get('memory_missing', '-')}",
                "/".join(_ms(p.get("p50_ms")) for p in phases),
                "/".join(_ms(p.get("p99_ms")) for p in phases),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


async def run(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    chosen = (scenarios.quick if args.quick else scenarios.full)(args.duration)
    if args.only:
        chosen = [s for s in chosen if s.name in args.only]
    results: list[dict[str, Any]] = []
    with chaos_mesh(tmp / "mesh", orchestration=args.orchestration_replicas) as mesh:
        for scenario in chosen:
            await settle(mesh, BETWEEN_S)
            print(f"-- {scenario.name}: {scenario.what}", flush=True)
            result = await run_scenario(
                mesh,
                scenario,
                rate=args.rate,
                before_s=BEFORE_S,
                sessions=SESSIONS,
                timeout_s=TIMEOUT_S,
            )
            print(table([result]), flush=True)
            results.append(result)
        if not args.quick and (not args.only or "burst-retry-by-key" in args.only):
            await settle(mesh, BETWEEN_S)
            print("-- burst-retry-by-key", flush=True)
            results.append(await run_burst(mesh))
    if not args.quick and (not args.only or "disk-full" in args.only):
        print("-- disk-full (single-replica SQLite context)", flush=True)
        results.append(await run_disk_full(tmp / "disk", rate=args.rate))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the bounded make-test subset")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--rate", type=float, default=RATE, help="Chat turns per second")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="load per scenario")
    parser.add_argument(
        "--orchestration-replicas",
        type=int,
        default=2,
        help="orchestration replicas (several share a conversation log on Redis)",
    )
    parser.add_argument("--json", type=Path, default=Path(".switchboard/chaos/report.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="switchboard-chaos-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print()
    print(table(results))
    print(f"\nJSON: {args.json}")
    bad = [r["scenario"] for r in results if r.get("lost") or r.get("doubled")]
    if bad:
        print(f"lost or doubled turns in: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
