"""What the edge's rendered config says for browsers: filter order, CORS policy, the
page's routes, and the page's files (shipped, routed, and in step with the protos)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pydantic
import pytest

from switchboard_server.mesh.edge.web import CONTENT_TYPES, WEB_DIR, page_files
from switchboard_server.mesh.render import render_edge, render_sidecar
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology, make_plan

ROOT = Path(__file__).parents[2]


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def _vhost(config: dict[str, Any]) -> dict[str, Any]:
    return _hcm(config)["route_config"]["virtual_hosts"][0]  # type: ignore[no-any-return]


def _edge(topology: Topology, **settings: Any) -> dict[str, Any]:
    mesh = MeshSettings(**settings)
    return render_edge(make_plan(topology, mesh), mesh)


def test_browsers_filters_come_first_at_the_edge_only(topology: Topology) -> None:
    names = [f["name"] for f in _hcm(_edge(topology))["http_filters"]]
    assert names[:2] == ["envoy.filters.http.cors", "envoy.filters.http.grpc_web"]
    assert names[-1] == "envoy.filters.http.router"
    settings = MeshSettings()
    plan = make_plan(topology, settings)
    sidecar = render_sidecar(plan, plan.all_replicas()[0], settings)
    sidecar_names = [f["name"] for f in _hcm(sidecar)["http_filters"]]
    assert "envoy.filters.http.cors" not in sidecar_names
    assert "envoy.filters.http.grpc_web" not in sidecar_names


def _policy(config: dict[str, Any]) -> dict[str, Any]:
    return _vhost(config)["typed_per_filter_config"]["envoy.filters.http.cors"]  # type: ignore[no-any-return]


def test_cors_allows_only_the_page_by_default(topology: Topology) -> None:
    policy = _policy(_edge(topology, edge_port=8123))
    assert policy["allow_origin_string_match"] == [{"exact": "http://127.0.0.1:8123"}]
    assert policy["forward_not_matching_preflights"] is False
    exposed = {h.strip() for h in policy["expose_headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-correlation-id"} <= exposed


def test_cors_adds_the_configured_origins(topology: Topology) -> None:
    origins = ("https://chat.example.com", "http://[::1]:3000", "http://127.0.0.1:8123")
    policy = _policy(_edge(topology, edge_port=8123, cors_allowed_origins=origins))
    assert [m["exact"] for m in policy["allow_origin_string_match"]] == [
        "http://127.0.0.1:8123",
        "https://chat.example.com",
        "http://[::1]:3000",
    ]


@pytest.mark.parametrize(
    "bad", ["chat.example.com", "https://chat.example.com/", "https://a.example/path", "ftp://x"]
)
def test_a_bad_origin_fails_fast_with_the_setting_named(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_MESH_CORS_ALLOWED_ORIGINS", json.dumps([bad]))
    with pytest.raises(pydantic.ValidationError, match="cors_allowed_origins"):
        MeshSettings()


def test_any_origin_can_be_allowed_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_MESH_CORS_ALLOWED_ORIGINS", '["*"]')
    assert MeshSettings().cors_allowed_origins == ("*",)


def test_route_order_page_then_preflight_then_grpc(topology: Topology) -> None:
    config = _edge(topology)
    routes = _vhost(config)["routes"]
    names = [r["name"] for r in routes]
    pages = [r for r in routes if "direct_response" in r]
    assert names[: len(pages)] == [f"web:{url}" for url in page_files()]
    assert names[len(pages)] == "cors_preflight"
    for route in pages:
        assert Path(route["direct_response"]["body"]["filename"]).is_file()
    largest = max(p.stat().st_size for p in page_files().values())
    assert _hcm(config)["route_config"]["max_direct_response_body_size_bytes"] >= largest
    # gRPC routes accept gRPC-Web too at the edge (it is routed before conversion)
    chat = next(r for r in routes if r["name"] == "orchestration.Chat")
    assert "grpc" not in chat["match"]
    assert chat["match"]["headers"][0]["string_match"] == {"prefix": "application/grpc"}


def test_every_page_file_is_routed_and_shipped() -> None:
    files = page_files()
    assert files["/"] == WEB_DIR / "index.html"
    served = {p for p in WEB_DIR.rglob("*") if p.is_file() and p.suffix in CONTENT_TYPES}
    assert set(files.values()) == served
    # the wheel carries them: a missing file would stop the edge from loading its config
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    for path in served:
        assert any(fnmatch(path.name, pattern) for pattern in patterns), path.name


def test_the_page_descriptor_matches_the_protos(tmp_path: Path) -> None:
    out = tmp_path / "orchestration.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_web_descriptor.py"), str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    committed = WEB_DIR / "orchestration.json"
    assert out.read_text() == committed.read_text(), "stale: run `make proto` and commit"
