"""``switchboard load``: drive the mesh with Chat turns at a fixed rate (open loop).

Prints a JSON report on stdout (or to ``--report FILE``) and, on a terminal or with
``--progress``, a live progress line on stderr. Needs the ``load`` extra (hdrhistogram).
Exit code 0 when the run completed, whatever the codes; 1 when ``--max-failed-ratio``
was exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from switchboard_client._config import DEFAULT_TARGET, TARGET_ENV, ConnectConfig
from switchboard_client.cli import Subparsers, requires_extra

EXIT_OK = 0
EXIT_FAILED = 1


def register(subparsers: Subparsers) -> None:
    load = subparsers.add_parser(
        "load",
        help="Send Chat turns at a fixed rate and report latency and codes as JSON.",
        description="Open-loop load: each request is due at a fixed instant and its latency "
        "counts from that instant, so a stalled server cannot slow the generator down "
        "and hide (no coordinated omission).",
    )
    load.add_argument("--rate", type=float, default=40.0, help="Requests per second (40).")
    load.add_argument("--duration", type=float, default=30.0, help="Seconds of load (30).")
    load.add_argument(
        "--concurrency", type=int, default=64, help="Most requests in flight at once (64)."
    )
    load.add_argument("--sessions", type=int, default=16, help="Sessions the turns rotate over.")
    load.add_argument(
        "--messages",
        type=Path,
        metavar="FILE",
        help="Message mix, one a line (default: built-in HWU64-like requests).",
    )
    load.add_argument(
        "--arrival",
        choices=("constant", "poisson"),
        default="constant",
        help="Evenly spaced requests, or Poisson arrivals at the same mean rate.",
    )
    load.add_argument("--seed", type=int, default=0, help="Seed of the mix and the arrivals.")
    load.add_argument(
        "--target",
        metavar="HOST:PORT",
        help=f"Edge, orchestration sidecar or app (default: ${TARGET_ENV} or {DEFAULT_TARGET}).",
    )
    load.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="Deadline of each request, from its scheduled start (5).",
    )
    load.add_argument(
        "--connections", type=int, default=1, help="HTTP/2 connections to spread requests on."
    )
    load.add_argument("--session-prefix", help="Session id prefix (default: load-<random>).")
    load.add_argument("--report", type=Path, metavar="FILE", help="Write the JSON report here.")
    load.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Live progress line on stderr (default: when stderr is a terminal).",
    )
    load.add_argument(
        "--max-failed-ratio",
        type=float,
        metavar="RATIO",
        help="Exit 1 when more than this share of requests failed (e.g. 0.001).",
    )
    load.set_defaults(func=run_load_command)


def run_load_command(args: argparse.Namespace) -> int:
    return asyncio.run(_load(args, sys.stdout, sys.stderr))


async def _load(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with requires_extra("load"):
        from switchboard_client.loadgen import (
            BUILTIN_MESSAGES,
            ChatDriver,
            LoadPlan,
            Recorder,
            progress_line,
            read_messages,
            run_load,
        )
    try:
        plan = LoadPlan(
            rate=args.rate,
            duration_s=args.duration,
            concurrency=args.concurrency,
            sessions=args.sessions,
            timeout_s=args.timeout,
            messages=read_messages(args.messages) if args.messages else BUILTIN_MESSAGES,
            arrival=args.arrival,
            seed=args.seed,
            session_prefix=args.session_prefix or f"load-{uuid.uuid4().hex[:8]}",
        )
        config = ConnectConfig.from_env(target=args.target, timeout_s=args.timeout)
        driver = ChatDriver(config, connections=args.connections)
    except (ValueError, OSError) as exc:
        print(f"switchboard load: {exc}", file=err)
        return EXIT_FAILED
    show = err.isatty() if args.progress is None else args.progress
    end = "\r" if err.isatty() else "\n"

    def progress(recorder: Recorder, elapsed_s: float) -> None:
        err.write(progress_line(recorder, elapsed_s, plan.total) + end)
        err.flush()

    async with driver:
        report = await run_load(
            plan,
            driver.send,
            progress=progress if show else None,
            config={"target": config.target, "connections": args.connections},
        )
    if show:
        err.write("\n" if end == "\r" else "")
    _write(report, args.report, out)
    limit = args.max_failed_ratio
    if limit is not None and report["failed"] > limit * max(1, report["scheduled"]):
        print(f"switchboard load: {report['failed']} failed > {limit:g} of the run", file=err)
        return EXIT_FAILED
    return EXIT_OK


def _write(report: dict[str, Any], path: Path | None, out: TextIO) -> None:
    text = json.dumps(report, indent=2) + "\n"
    if path is None:
        out.write(text)
    else:
        path.write_text(text, encoding="utf-8")
