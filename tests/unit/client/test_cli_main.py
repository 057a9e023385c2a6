"""The `switchboard` entry point behaves like a Unix tool at the edges."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import pytest

from switchboard_client import cli


def parser_running(func: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.set_defaults(func=func)
    return parser


def test_a_closed_pipe_ends_quietly_with_141(monkeypatch: pytest.MonkeyPatch) -> None:
    def closed_pipe(_: argparse.Namespace) -> int:
        raise BrokenPipeError

    saved = os.dup(sys.stdout.fileno())
    monkeypatch.setattr(cli, "build_parser", lambda: parser_running(closed_pipe))
    try:
        with pytest.raises(SystemExit) as done:
            cli.main([])
    finally:
        os.dup2(saved, sys.stdout.fileno())
        os.close(saved)
    assert done.value.code == 141


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(_: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", lambda: parser_running(interrupted))
    with pytest.raises(SystemExit) as done:
        cli.main([])
    assert done.value.code == 130


def test_the_command_exit_code_is_the_process_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: parser_running(lambda _: 3))
    with pytest.raises(SystemExit) as done:
        cli.main([])
    assert done.value.code == 3
