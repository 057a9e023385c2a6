"""What ``switchboard traces`` and ``switchboard trace-receiver`` do.

The parsers live in :mod:`.cli`, which imports this module (and the server stack with
it) only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import httpx

from switchboard_server.config import load_settings_or_report
from switchboard_server.observability.logging import configure_logging
from switchboard_server.observability.trace_receiver import TraceReceiver
from switchboard_server.observability.trace_store import SpanRecord
from switchboard_server.observability.trace_view import render_waterfall

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


def _fetch(url: str, path: str, params: dict[str, Any]) -> Any:
    reply = httpx.get(f"{url.rstrip('/')}{path}", params=params, timeout=10)
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return reply.json()


def traces_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    obs = settings.observability
    url = args.url or obs.receiver_url or f"http://{settings.core.host}:{obs.receiver_query_port}"
    try:
        if args.trace_id:
            one = _fetch(url, f"/traces/{args.trace_id}", {})
            documents = [] if one is None else [one]
        else:
            params = {"limit": args.limit, "health": str(args.health).lower()}
            documents = _fetch(url, "/traces", params) or []
    except httpx.HTTPError as exc:
        print(f"switchboard traces: cannot query {url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(documents, indent=2))
        return 0
    if not documents:
        print("no traces")
    for document in documents:
        spans = [SpanRecord.from_json(s) for s in document["spans"]]
        print(render_waterfall(spans))
        print()
    return 0


async def _run_receiver(receiver: TraceReceiver) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    receiver.start()
    try:
        await stop.wait()
    finally:
        receiver.stop()
    return 0


def receiver_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    configure_logging(settings.core.log_level, settings.core.log_format)
    receiver = TraceReceiver.from_settings(settings)
    if args.port is not None:
        receiver.port = args.port
    if args.query_port is not None:
        receiver.query_port = args.query_port
    return asyncio.run(_run_receiver(receiver))
