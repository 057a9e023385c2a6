"""Our code uses OpenTelemetry, grpc, grpc_health and grpc_reflection through their
public API only: no ``_``-prefixed module or attribute of theirs, anywhere in
``server/`` or ``clients/`` (the generated ``clients/switchboard/`` aside). A private
name can change in any release without notice, so a new version would break us
silently; this test makes it loud instead.

The one exception is ``opentelemetry.semconv._incubating.attributes``: the semantic
conventions package documents it as the home of the not-yet-stable attribute names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (ROOT / "server", ROOT / "clients")
GENERATED = ROOT / "clients" / "switchboard"
LIBRARIES = ("opentelemetry", "grpc", "grpc_health", "grpc_reflection")
ALLOWED = ("opentelemetry.semconv._incubating.attributes",)


def _is_private(name: str) -> bool:
    """``_x`` is private; ``__x__`` (a dunder such as ``__version__``) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _violation(dotted: str) -> bool:
    """Whether ``dotted`` (a module or attribute path) reaches a private name of a
    library we check."""
    parts = dotted.split(".")
    if parts[0] not in LIBRARIES:
        return False
    if any(dotted == allowed or dotted.startswith(allowed + ".") for allowed in ALLOWED):
        return False
    return any(_is_private(part) for part in parts[1:])


def _attribute_path(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """``a.b.c`` as ("a", ["b", "c"]); None when the chain does not start at a name."""
    attributes: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        attributes.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    return current.id, attributes[::-1]


def private_uses(source: str, filename: str = "<source>") -> Iterator[tuple[int, str]]:
    """(line, dotted path) of every private name of a checked library that ``source``
    imports or reaches through a name bound to one of the libraries' modules or objects."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> the library path it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _violation(alias.name):
                    yield node.lineno, alias.name
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _violation(node.module):
                yield node.lineno, node.module
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if alias.name != "*" and _violation(dotted):
                    yield node.lineno, dotted
                aliases[alias.asname or alias.name] = dotted
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _imports_by_name(node.func)
            and _violation(node.args[0].value)
        ):
            yield node.lineno, node.args[0].value
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            path = _attribute_path(node)
            if path is None or path[0] not in aliases:
                continue
            dotted = ".".join((aliases[path[0]], *path[1]))
            if _violation(dotted):
                yield node.lineno, dotted


def _imports_by_name(func: ast.expr) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _sources() -> list[Path]:
    return sorted(
        path
        for top in SCANNED
        for path in top.rglob("*.py")
        if not path.is_relative_to(GENERATED) and ".venv" not in path.parts
    )


@pytest.mark.parametrize(
    "source",
    [
        "import grpc._cython.cygrpc",
        "from grpc_health.v1._async import HealthServicer",
        "from grpc_reflection.v1alpha import _async",
        "from opentelemetry.instrumentation.grpc import _aio_client",
        "import grpc\ngrpc._cython",
        "import grpc.aio as aio\naio._call.UnaryUnaryCall",
        "from opentelemetry import trace\ntrace._TRACER_PROVIDER",
        "from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as t\n"
        "t.OTLPSpanExporter._translate_data",
        "import importlib\nimportlib.import_module('grpc_health.v1._async')",
    ],
)
def test_the_scan_finds_each_way_of_reaching_a_private_name(source: str) -> None:
    assert list(private_uses(source)), source


@pytest.mark.parametrize(
    "source",
    [
        "from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_METHOD",
        "from opentelemetry.semconv._incubating.attributes import rpc_attributes",
        "from grpc_health.v1 import health\nhealth.aio.HealthServicer",
        "import grpc\ngrpc.__version__",
        "import os\nos._exit(0)",  # not a library we check
        "from . import _private",  # our own modules may be private
        "from switchboard_client import _errors",
        "import grpc\nserver = grpc.aio.server()\nserver._state",  # an object, not a module
    ],
)
def test_the_scan_leaves_public_names_and_our_own_alone(source: str) -> None:
    assert list(private_uses(source)) == [], source


def test_server_and_clients_use_the_libraries_public_api_only() -> None:
    sources = _sources()
    assert any(p.name == "app.py" for p in sources)  # the scan sees our code
    found = [
        f"{path.relative_to(ROOT)}:{line}: {dotted}"
        for path in sources
        for line, dotted in private_uses(path.read_text(), str(path))
    ]
    assert found == []
