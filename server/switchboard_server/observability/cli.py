"""``switchboard traces`` and ``switchboard trace-receiver``.

* ``switchboard traces [--json] [--limit N] [--trace-id ID] [--url URL]`` lists recent
  traces from a running receiver as span-tree waterfalls (or JSON documents).
* ``switchboard trace-receiver [--port P] [--query-port Q]`` runs the built-in OTLP/gRPC
  receiver in the foreground until SIGTERM/SIGINT (see :mod:`.trace_receiver`).

Only the parsers are here, so ``switchboard --help`` lists these with the base install;
the implementation (:mod:`.commands`) needs the ``server`` extra and is imported when
one of them runs.
"""

from __future__ import annotations

import argparse

from switchboard_client.cli import Subparsers, requires_extra


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def traces_command(args: argparse.Namespace) -> int:
    with requires_extra("server"):
        from switchboard_server.observability import commands
    return commands.traces_command(args)


def receiver_command(args: argparse.Namespace) -> int:
    with requires_extra("server"):
        from switchboard_server.observability import commands
    return commands.receiver_command(args)


def register(subparsers: Subparsers) -> None:
    traces = subparsers.add_parser(
        "traces", help="List recent traces from the trace receiver as span trees."
    )
    traces.add_argument("--json", action="store_true", help="Print JSON documents.")
    traces.add_argument("--limit", type=_non_negative, default=10, help="Most traces to list (10).")
    traces.add_argument("--trace-id", help="Show only this trace (hex id).")
    traces.add_argument(
        "--health", action="store_true", help="Include traces of health probes (hidden)."
    )
    traces.add_argument("--url", help="Receiver query URL (SWITCHBOARD_OBS_RECEIVER_URL).")
    traces.set_defaults(func=traces_command)

    receiver = subparsers.add_parser(
        "trace-receiver", help="Run the built-in OTLP/gRPC trace receiver in the foreground."
    )
    receiver.add_argument(
        "--port", type=int, help="OTLP/gRPC port (SWITCHBOARD_OBS_RECEIVER_PORT, 4317)."
    )
    receiver.add_argument(
        "--query-port",
        type=int,
        help="HTTP query port (SWITCHBOARD_OBS_RECEIVER_QUERY_PORT, 4320).",
    )
    receiver.set_defaults(func=receiver_command)
