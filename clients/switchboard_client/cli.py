"""The ``switchboard`` command line.

Sub-commands live next to the code they drive; each module listed in ``COMMANDS``
exposes ``register(subparsers)`` which adds its parsers with ``set_defaults(func=...)``
where ``func(args) -> int`` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = (
    "switchboard_client.commands.chat",
    "switchboard_server.classification.cli",
    "switchboard_server.mesh.cli",
    "switchboard_server.observability.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Switchboard: a gRPC mesh for conversational assistants."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`switchboard traces | head`): stop quietly, like a Unix tool.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
