"""The ``switchboard`` command line.

Sub-commands live next to the code they drive. Each group of them is a
:class:`RegisterCommands` function published under the ``switchboard.commands`` entry-point
group (see ``pyproject.toml``); it adds its parsers with ``set_defaults(func=...)``, where
``func(args) -> int`` returns the exit code. Registering imports only the base install, so
``switchboard --help`` lists every command whatever is installed; a command whose extra is
missing raises :class:`MissingExtraError` when it runs, and the CLI names the extra to
install instead of printing a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXIT_MISSING_EXTRA",
    "MissingExtraError",
    "RegisterCommands",
    "Subparsers",
    "build_parser",
    "discover_commands",
    "main",
    "requires_extra",
]

ENTRY_POINT_GROUP = "switchboard.commands"
EXIT_MISSING_EXTRA = 2
_OWN_PACKAGES = frozenset({"switchboard", "switchboard_client", "switchboard_server"})


class Subparsers(Protocol):
    """What a command group receives: the object ``add_subparsers()`` returns."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


class RegisterCommands(Protocol):
    """An entry point of the ``switchboard.commands`` group: adds its sub-commands."""

    def __call__(self, subparsers: Subparsers, /) -> None: ...


class MissingExtraError(Exception):
    """A command needs a distribution extra (``switchboard[extra]``) that is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"needs the {extra!r} extra (no module named {module!r}); "
            f"install it with: pip install 'switchboard[{extra}]'"
        )
        self.extra = extra
        self.module = module


@contextlib.contextmanager
def requires_extra(extra: str) -> Iterator[None]:
    """Turn a missing third-party module inside the block into :class:`MissingExtraError`.

    A missing module of Switchboard itself is a bug, not a missing extra: it propagates.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if not top or top in _OWN_PACKAGES:
            raise
        raise MissingExtraError(extra, exc.name or top) from exc


def discover_commands() -> list[RegisterCommands]:
    """Every installed command group, in the order the distributions declare them."""
    found: list[RegisterCommands] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        register = entry.load()
        if not callable(register):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not callable")
        found.append(cast(RegisterCommands, register))
    return found


def build_parser(commands: Iterable[RegisterCommands] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Switchboard: a gRPC mesh for conversational assistants."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in discover_commands() if commands is None else commands:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except MissingExtraError as exc:
        print(f"switchboard {args.command}: {exc}", file=sys.stderr)
        code = EXIT_MISSING_EXTRA
    except BrokenPipeError:
        # The reader went away (`switchboard traces | head`): stop quietly, like a Unix tool.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
