"""The separations the layout promises.

* In every service package, the servicer, its proto translation and the wiring (and,
  in orchestration, the outbound peers) may import ``grpc`` and generated ``*_pb2``
  code; the domain entry (``domain.py``), its value types, its stores and everything
  else may not, so the domain can be read, tested and reused without the wire format.
* Nothing imports a ``conftest`` (fixtures are found by pytest, helpers live in
  ``tests/support``), and the shipped code and ``scripts/`` never import ``tests``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import switchboard_server

PACKAGE = Path(switchboard_server.__file__).parent
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("classification", "context", "orchestration")
# Modules allowed to speak gRPC, per service (dotted, relative to the service package).
ADAPTERS: dict[str, set[str]] = {
    "classification": {"servicer", "translate", "module"},
    "context": {"servicer", "translate", "module"},
    "orchestration": {"servicer", "translate", "module", "peers", "in_process"},
}
FORBIDDEN_ROOTS = ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "switchboard")
FORBIDDEN_PREFIXES = ("google.protobuf", "google.rpc")


def imported_modules(source: str, package: tuple[str, ...] = ()) -> list[str]:
    """Every module ``source`` imports (``from a import b``: ``a`` and ``a.b``), anywhere
    in it; relative imports resolved against ``package`` (the file's package parts)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


def imports_of(path: Path) -> list[str]:
    package = path.relative_to(ROOT).parent.parts
    return imported_modules(path.read_text(encoding="utf-8"), package)


def wire_imports(path: Path) -> list[str]:
    """The gRPC/protobuf modules ``path`` imports, anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if (
                root in FORBIDDEN_ROOTS
                or name.startswith(FORBIDDEN_PREFIXES)
                or name.endswith(("_pb2", "_pb2_grpc"))
            ):
                found.append(name)
    return found


def service_modules(service: str) -> dict[str, Path]:
    root = PACKAGE / service
    return {
        ".".join(path.relative_to(root).with_suffix("").parts): path
        for path in sorted(root.rglob("*.py"))
    }


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_one_name_per_role(service: str) -> None:
    modules = service_modules(service)
    for role in ("domain", "translate", "servicer", "settings", "metrics", "module"):
        assert role in modules, f"{service}/{role}.py is missing"


@pytest.mark.parametrize("service", SERVICES)
def test_only_the_adapters_import_grpc_or_protos(service: str) -> None:
    modules = service_modules(service)
    assert ADAPTERS[service] <= modules.keys(), "an allowed adapter was renamed or removed"
    offenders = {
        name: imports
        for name, path in modules.items()
        if name not in ADAPTERS[service] and (imports := wire_imports(path))
    }
    assert offenders == {}


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_its_values_and_its_stores_are_wire_free(service: str) -> None:
    modules = service_modules(service)
    core = {
        name: path
        for name, path in modules.items()
        if name in ("domain", "values") or name.split(".")[0] == "store"
    }
    assert "domain" in core
    offenders = {name: imports for name, path in core.items() if (imports := wire_imports(path))}
    assert offenders == {}


def test_the_check_sees_each_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import grpc.aio\n"
        "from grpc import StatusCode\n"
        "from google.protobuf.timestamp_pb2 import Timestamp\n"
        "from switchboard.context.v1 import context_service_pb2 as pb\n"
        "import json\n"
        "from switchboard_server.errors import NotFound\n"
        "def late():\n"
        "    from google.rpc import status_pb2\n",
        encoding="utf-8",
    )
    found = wire_imports(sample)
    assert "grpc.aio" in found
    assert "grpc" in found
    assert "google.protobuf.timestamp_pb2" in found
    assert "switchboard.context.v1.context_service_pb2" in found
    assert "google.rpc" in found
    assert not [name for name in found if name.startswith(("json", "switchboard_server"))]


def python_files(*directories: str) -> list[Path]:
    return [path for d in directories for path in sorted((ROOT / d).rglob("*.py"))]


def test_nothing_imports_a_conftest() -> None:
    offenders = {
        str(path.relative_to(ROOT)): names
        for path in python_files("tests", "scripts")
        if (names := [n for n in imports_of(path) if "conftest" in n.split(".")])
    }
    assert offenders == {}


def test_scripts_and_shipped_code_never_import_tests() -> None:
    offenders = {
        str(path.relative_to(ROOT)): names
        for path in python_files("scripts", "server", "clients")
        if (names := [n for n in imports_of(path) if n.split(".")[0] == "tests"])
    }
    assert offenders == {}


def test_the_import_scan_resolves_relative_imports() -> None:
    source = "from .conftest import x\nfrom ..support import y\nimport tests.support.z\n"
    found = imported_modules(source, ("tests", "integration"))
    assert "tests.integration.conftest" in found
    assert "tests.support.y" in found
    assert "tests.support.z" in found
