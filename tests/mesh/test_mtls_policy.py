"""Who may call what, as rendered from the topology (docs/security.md), without Envoy."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from switchboard_server.config import CoreSettings, Settings
from switchboard_server.mesh.render import render_all
from switchboard_server.mesh.runner import MeshRunner
from switchboard_server.mesh.security.mtls import MeshTls, callers, rbac_filter, secure_all
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import _PB2_MODULES, Topology, make_plan

TLS = MeshTls(Path("/certs"), "switchboard.local", "switchboard")
ADMIN = {"AddExamples", "IngestDocuments", "DeleteDocuments", "ClearMemory"}


def _writes(grpc_service: str) -> set[str]:
    """Methods whose request carries an idempotency key (AIP-155): the writes."""
    module = importlib.import_module(_PB2_MODULES[grpc_service])
    service = module.DESCRIPTOR.services_by_name[grpc_service.rsplit(".", 1)[1]]
    return {m.name for m in service.methods if "request_id" in m.input_type.fields_by_name}


def test_every_write_rpc_states_whether_it_is_an_admin_method(topology: Topology) -> None:
    """A new write RPC fails here until the topology says `admin: true` or `admin: false`."""
    for spec in topology.services.values():
        undeclared = _writes(spec.grpc_service) - set(spec.admin)
        assert undeclared == set(), f"{spec.name}: writes without an `admin:` mark"


def test_the_admin_methods(topology: Topology) -> None:
    admin = {m for spec in topology.services.values() for m in spec.admin_methods}
    assert admin == ADMIN


def test_only_orchestration_and_the_edge_call_classification_and_context(
    topology: Topology,
) -> None:
    assert callers(topology, "classification") == ["orchestration", "edge"]
    assert callers(topology, "context") == ["orchestration", "edge"]
    assert callers(topology, "orchestration") == ["edge"]


def test_rbac_keeps_admin_methods_from_the_callers(topology: Topology) -> None:
    rules = rbac_filter(topology, topology.services["context"], TLS)["typed_config"]["rules"]
    assert rules["action"] == "ALLOW"
    policies = rules["policies"]
    callers_policy = policies["callers"]
    names = [p["authenticated"]["principal_name"]["exact"] for p in callers_policy["principals"]]
    assert names == [
        "spiffe://switchboard.local/ns/switchboard/sa/orchestration",
        "spiffe://switchboard.local/ns/switchboard/sa/edge",
    ]
    excluded = callers_policy["permissions"][0]["and_rules"]["rules"][1]["not_rule"]["or_rules"]
    paths = {r["url_path"]["path"]["exact"] for r in excluded["rules"]}
    prefix = "/switchboard.context.v1.ContextService/"
    assert paths == {f"{prefix}{m}" for m in ("ClearMemory", "IngestDocuments", "DeleteDocuments")}
    operator = policies["operator"]["principals"][0]["authenticated"]["principal_name"]
    assert operator == {"exact": "spiffe://switchboard.local/ns/switchboard/sa/operator"}


def test_every_sidecar_hop_is_mutual_tls_and_the_app_hop_is_not(topology: Topology) -> None:
    settings = MeshSettings()
    plan = make_plan(topology, settings)
    configs = secure_all(render_all(plan, settings), plan, TLS)
    orchestration = configs["orchestration-0.sidecar"]["static_resources"]
    listeners = {listener["name"]: listener for listener in orchestration["listeners"]}
    ingress_tls = listeners["ingress"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert ingress_tls["require_client_certificate"] is True
    assert "transport_socket" not in listeners["egress_context"]["filter_chains"][0]
    clusters = {c["name"]: c for c in orchestration["clusters"]}
    assert "transport_socket" not in clusters["local_app"]
    upstream = clusters["context"]["transport_socket"]["typed_config"]["common_tls_context"]
    san = upstream["combined_validation_context"]["default_validation_context"]
    assert san["match_typed_subject_alt_names"] == [
        {
            "san_type": "URI",
            "matcher": {"exact": "spiffe://switchboard.local/ns/switchboard/sa/context"},
        }
    ]
    assert upstream["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_3"
    edge = {c["name"]: c for c in configs["edge"]["static_resources"]["clusters"]}
    assert "transport_socket" in edge["orchestration"]


def _sidecar_tls(entry_config: Path) -> bool:
    config = yaml.safe_load(entry_config.read_text())
    ingress = config["static_resources"]["listeners"][0]
    return "transport_socket" in ingress["filter_chains"][0]


@pytest.mark.parametrize("insecure", [False, True])
def test_up_renders_mtls_unless_insecure(
    topology: Topology, tmp_path: Path, insecure: bool
) -> None:
    mesh = MeshSettings(insecure=insecure)
    settings = Settings(core=CoreSettings(data_dir=tmp_path), mesh=mesh)
    runner = MeshRunner(settings, make_plan(topology, mesh))
    entries = {entry.spec.name: entry for entry in runner.build()}
    config = tmp_path / "mesh" / "envoy" / "context-0.sidecar.yaml"
    assert _sidecar_tls(config) is not insecure
    probe = entries["context-0"].probe
    certs = tmp_path / "mesh" / "certs"
    if insecure:
        assert (probe.identity_dir, probe.server_name) == ("", "")
        assert not certs.exists()
    else:  # the app is probed through its sidecar as the operator
        assert (probe.identity_dir, probe.server_name) == (str(certs / "operator"), "context")
        assert (certs / "sds" / "context.cert.yaml").exists()


async def test_the_runner_reissues_certificates_past_their_rotation_point(
    topology: Topology, tmp_path: Path
) -> None:
    """Certificates of 3 s are due at 2 s: the runner's check reissues them by itself
    (the sidecars read them through SDS: tests/mesh/test_mesh_mtls_up.py)."""
    mesh = MeshSettings(cert_ttl_h=3 / 3600, cert_check_interval_s=0.2)
    settings = Settings(core=CoreSettings(data_dir=tmp_path), mesh=mesh)
    runner = MeshRunner(settings, make_plan(topology, mesh))
    runner.build()
    edge = tmp_path / "mesh" / "certs" / "edge" / "tls.crt"
    first = x509.load_pem_x509_certificate(edge.read_bytes()).serial_number
    stop = asyncio.Event()
    task = asyncio.create_task(runner._rotate_certs(stop))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        current = first
        while current == first and loop.time() < deadline:
            await asyncio.sleep(0.1)
            current = x509.load_pem_x509_certificate(edge.read_bytes()).serial_number
    finally:
        stop.set()
        await task
    assert current != first
