"""pyproject.toml bounds every dependency and requirements.lock pins each within its bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Type stubs and build tools follow the checker/build, not our runtime behaviour.
UNBOUNDED_OK = {"types-protobuf", "types-pyyaml", "types-tqdm", "setuptools", "wheel"}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


def requirements() -> list[Requirement]:
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        found += [Requirement(r) for r in extra]
    return [r for r in found if canonicalize_name(r.name) != PROJECT["name"]]


def lock() -> dict[str, tuple[Version, int]]:
    """Each locked package: its version and how many hashes it carries."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match[1])
            pins[name] = (Version(match[2]), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_each_dependency_is_locked_within_its_bounds(requirement: Requirement) -> None:
    pins = lock()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
    version, hashes = pins[name]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"requirements.lock has {name}=={version}, outside {requirement.specifier}: run `make lock`"
    )
    assert hashes > 0
    if name not in UNBOUNDED_OK:
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
            f"{requirement} has no upper bound"
        )


def test_every_locked_package_has_a_hash() -> None:
    pins = lock()
    assert len(pins) > 50
    assert [name for name, (_, hashes) in pins.items() if hashes == 0] == []


def test_the_base_install_is_the_client() -> None:
    base = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert base == {"grpcio", "protobuf", "grpcio-status", "googleapis-common-protos"}
    extras = PROJECT["optional-dependencies"]
    assert set(extras) == {"server", "mesh", "redis", "embeddings", "load", "dev"}
    dev = {canonicalize_name(Requirement(r).name) for r in extras["dev"]}
    assert "grpcio-tools" in dev
    others = {
        canonicalize_name(Requirement(r).name)
        for name, group in extras.items()
        if name != "dev"
        for r in group
    }
    assert "grpcio-tools" not in others
