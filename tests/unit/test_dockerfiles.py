"""Every Dockerfile passes hadolint, and keeps the promises docs/deploy.md makes: the
base image is ``ARG BASE_IMAGE`` (default ``python:3.11-slim``), no ``# syntax=`` line
(no frontend to pull), a numeric non-root user, and the app's health check is a real
``grpc.health.v1`` call."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The images (docker/) and the smoke test's stand-ins (scripts/container_smoke/).
DOCKERFILES = sorted([*ROOT.glob("docker/*Dockerfile"), *ROOT.glob("scripts/*/*Dockerfile")])
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_the_images_are_there() -> None:
    names = {p.name for p in DOCKERFILES}
    assert names >= {"app.Dockerfile", "envoy.Dockerfile", "substitutes.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    run = hadolint(dockerfile)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    run = hadolint(bad)
    assert run.returncode != 0
    assert "DL3007" in run.stdout  # :latest
    assert "DL3013" in run.stdout  # unpinned pip install


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_argument_user_and_no_syntax_line(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert text.count("ARG BASE_IMAGE=python:3.11-slim\n") == 1
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages, "no FROM"
    assert all(s == "${BASE_IMAGE}" for s in stages), stages
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users == ["10001:10001"], users  # once, in the final stage, numeric


def test_the_app_health_check_is_a_grpc_call() -> None:
    text = (ROOT / "docker" / "app.Dockerfile").read_text()
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (.*)$", text, re.M | re.S)
    assert healthcheck is not None
    assert "switchboard-health --address" in healthcheck.group(1)
