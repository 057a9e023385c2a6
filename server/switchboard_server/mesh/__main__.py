"""``python -m switchboard_server.mesh up|down|status|stats|render-envoy|trace-receiver``.

The same commands as ``switchboard <command>`` (the mesh's, plus the trace receiver it
runs) without importing every other command's modules, so the detached supervisor and
its children start fast.
"""

from __future__ import annotations

import argparse
import sys

from switchboard_server.mesh.cli import register
from switchboard_server.observability.cli import register as register_observability


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m switchboard_server.mesh")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(subparsers)
    register_observability(subparsers)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
