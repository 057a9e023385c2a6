"""Every rendered Envoy config validates, and the policy lands where the topology says."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard_server.mesh.envoy import envoy_command
from switchboard_server.mesh.render import render_all, render_edge, render_sidecar, write_configs
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import (
    Topology,
    TopologyError,
    make_plan,
    parse_topology,
    service_methods,
)
from switchboard_server.testing import PortPool
from tests.support.mesh_harness import running_mesh, sub_topology, wait_healthy

pytestmark = pytest.mark.mesh

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def _validate(path: Path, settings: MeshSettings) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *envoy_command(path, settings, validate=True),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize(
    ("otlp", "upstream_spans", "sample_ratio"),
    [("", False, 1.0), ("127.0.0.1:4317", False, 0.1), ("127.0.0.1:4317", True, 1.0)],
)
async def test_every_rendered_config_validates(
    topology: Topology, tmp_path: Path, otlp: str, upstream_spans: bool, sample_ratio: float
) -> None:
    settings = MeshSettings(trace_upstream_spans=upstream_spans)
    plan = make_plan(topology.with_replicas({"classification": 2}), settings)
    configs = render_all(plan, settings, otlp, trace_sample_ratio=sample_ratio)
    paths = write_configs(configs, tmp_path)
    assert set(paths) == {
        "edge",
        "classification-0.sidecar",
        "classification-1.sidecar",
        "context-0.sidecar",
        "orchestration-0.sidecar",
    }
    results = await asyncio.gather(*(_validate(p, settings) for p in paths.values()))
    for (code, out), path in zip(results, paths.values(), strict=True):
        assert code == 0, f"{path.name}: {out}"


def _routes(config: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    vhost = hcm["typed_config"]["route_config"]["virtual_hosts"][0]
    return {r["name"]: r["route"] for r in vhost["routes"] if "route" in r}


def _ingress_routes(config: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    listener = next(x for x in config["static_resources"]["listeners"] if x["name"] == "ingress")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return {r["name"]: r["route"] for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}


def test_writes_retry_only_what_never_reached_an_app(topology: Topology) -> None:
    settings = MeshSettings()
    routes = _routes(render_edge(make_plan(topology, settings), settings))
    writes = [f"context.{m}" for m in ("AppendMemory", "ClearMemory", "IngestDocuments")]
    writes += ["context.DeleteDocuments", "orchestration.Chat", "classification.AddExamples"]
    for name in writes:
        policy = routes[name]["retry_policy"]
        assert set(policy["retry_on"].split(",")) == {
            "connect-failure",
            "refused-stream",
            "reset-before-request",
            "retriable-headers",
        }, name
        assert policy["retriable_headers"] == [
            {"name": "x-switchboard-not-delivered", "present_match": True}
        ]
        assert "per_try_timeout" not in policy  # a write in flight is never cut and replayed
    default = routes["classification"]  # ClassifyBatch, ListIntents, ...
    assert default["retry_policy"]["retry_on"] == (
        "unavailable,resource-exhausted,cancelled,connect-failure,refused-stream,reset,"
        "retriable-headers"
    )
    assert default["max_stream_duration"] == {
        "max_stream_duration": "2.000s",  # the route default when no grpc-timeout is sent
        "grpc_timeout_header_max": "60.000s",
    }
    # fast methods get a short per-try timeout from the topology; the rest the setting
    assert routes["classification.Classify"]["retry_policy"]["per_try_timeout"] == "0.400s"
    assert routes["context.GetContext"]["retry_policy"]["per_try_timeout"] == "0.400s"
    assert default["retry_policy"]["per_try_timeout"] == "1.000s"


def test_a_sidecar_marks_a_request_its_app_never_got(topology: Topology) -> None:
    """Its ingress retries its own app only on what that app never saw, and marks a
    refused connection (UF) so the caller's Envoy sends the request elsewhere."""
    settings = MeshSettings()
    plan = make_plan(topology, settings)
    sidecar = render_sidecar(plan, plan.replicas["context"][0], settings)
    ingress = _ingress_routes(sidecar)
    assert ingress["context.AppendMemory"]["retry_policy"]["retry_on"] == (
        "refused-stream,reset-before-request"
    )
    assert "retry_host_predicate" not in ingress["context.AppendMemory"]["retry_policy"]
    listener = sidecar["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (mapper,) = hcm["local_reply_config"]["mappers"]
    assert mapper["filter"] == {"response_flag_filter": {"flags": ["UF"]}}
    assert mapper["headers_to_add"][0]["header"]["key"] == "x-switchboard-not-delivered"


def test_every_cluster_balances_by_least_request(topology: Topology) -> None:
    settings = MeshSettings()
    plan = make_plan(topology.with_replicas({"classification": 2, "context": 2}), settings)
    configs = render_all(plan, settings, "127.0.0.1:4317")
    seen = 0
    for name, config in configs.items():
        for cluster in config["static_resources"]["clusters"]:
            assert cluster["lb_policy"] == "LEAST_REQUEST", (name, cluster["name"])
            if cluster["name"] != "otlp_collector":
                assert cluster["least_request_lb_config"] == {"choice_count": 2}
            seen += 1
    # edge: 3 services and the front door; 5 local apps; orchestration: 2 callees; a
    # collector per Envoy
    assert seen == 3 + 1 + 5 + 2 + 6


def test_grpc_stats_allowlist_comes_from_the_protos(topology: Topology) -> None:
    settings = MeshSettings()
    edge = render_edge(make_plan(topology, settings), settings)
    hcm = edge["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    stats = next(f for f in hcm["typed_config"]["http_filters"] if f["name"].endswith("grpc_stats"))
    allow = {
        s["name"]: s["method_names"]
        for s in stats["typed_config"]["individual_method_stats_allowlist"]["services"]
    }
    assert "AppendMemory" in allow["switchboard.context.v1.ContextService"]
    for name, methods in allow.items():
        if name.startswith("switchboard."):
            assert list(methods) == list(service_methods(name))


def test_topology_rejects_unknown_methods() -> None:
    raw = {
        "services": {
            "context": {
                "grpc_service": "switchboard.context.v1.ContextService",
                "app_port": 1,
                "sidecar_port": 2,
                "admin_port": 3,
                "metrics_port": 4,
                "default": {"timeout_s": 1, "idempotent": True},
                "methods": {"AppendMemorie": {"idempotent": False}},
            }
        }
    }
    with pytest.raises(TopologyError, match=r"services\.context\.methods\.AppendMemorie"):
        parse_topology(raw)


def test_replicas_get_their_own_ports(topology: Topology) -> None:
    plan = make_plan(topology.with_replicas({"classification": 3}), MeshSettings())
    ports = [r.sidecar_port for r in plan.replicas["classification"]]
    assert ports == [10051, 10151, 10251]
    all_ports = [plan.edge_port, plan.edge_admin_port]
    for r in plan.all_replicas():
        all_ports += [r.app_port, r.sidecar_port, r.admin_port, r.metrics_port]
        all_ports += list(r.egress_ports.values())
    assert len(all_ports) == len(set(all_ports))


@pytest.mark.parametrize("collector", [False, True])
async def test_trace_context_crosses_the_mesh(
    topology: Topology, tmp_path: Path, collector: bool
) -> None:
    """traceparent reaches the app with or without a collector; with one, Envoy joins."""
    otlp = f"127.0.0.1:{PortPool()()}" if collector else ""  # nothing listens: spans drop
    topo = sub_topology(topology, {"classification": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path, otlp_endpoint=otlp) as mesh:
        await wait_healthy(mesh, "classification", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            await stub.Classify(
                cls_pb.ClassifyRequest(text="hi"),
                metadata=(("traceparent", TRACEPARENT), ("x-correlation-id", "corr-1")),
                timeout=5,
            )
        seen = mesh.modules["classification-0"].state.last_metadata
        for _ in range(100):  # Envoy flushes its access log asynchronously
            if '"path"' in mesh.edge_log():
                break
            await asyncio.sleep(0.05)
        log_text = mesh.edge_log()
    assert TRACE_ID in seen["traceparent"]
    assert seen["x-request-id"]
    assert seen["x-correlation-id"] == "corr-1"
    if collector:
        assert seen["traceparent"] != TRACEPARENT  # Envoy's own spans in between
        assert f'"trace_id":"{TRACE_ID}"' in log_text


def test_access_logs_leave_out_health_probes_only(topology: Topology) -> None:
    settings = MeshSettings()
    plan = make_plan(topology, settings)
    for name, config in render_all(plan, settings).items():
        for listener in config["static_resources"]["listeners"]:
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            for log in hcm["access_log"]:
                header = log["filter"]["header_filter"]["header"]
                assert header["name"] == ":path", name
                assert header["string_match"] == {"prefix": "/grpc.health.v1.Health/"}
                assert header["invert_match"] is True


def test_envoy_batches_its_spans_when_tracing(topology: Topology) -> None:
    """Envoy's default sends one export call per 5 spans; the mesh batches them."""
    settings = MeshSettings(trace_flush_spans=300, trace_flush_interval_ms=700)
    plan = make_plan(topology, settings)
    for name, config in render_all(plan, settings, "127.0.0.1:4317").items():
        static, admin = config["layered_runtime"]["layers"]
        assert static["static_layer"] == {
            "tracing.opentelemetry.min_flush_spans": 300,
            "tracing.opentelemetry.flush_interval_ms": 700,
        }, name
        assert "admin_layer" in admin  # /runtime_modify still works
    untraced = render_all(plan, settings, "")["edge"]["layered_runtime"]["layers"][0]
    assert untraced["static_layer"] == {}


def _hcms(config: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in config["static_resources"]["listeners"]
    }


@pytest.mark.parametrize("upstream_spans", [False, True])
def test_one_span_per_envoy_hop_unless_upstream_spans_are_asked_for(
    topology: Topology, upstream_spans: bool
) -> None:
    """The span kind of a hop follows the listener's direction; upstream spans are opt-in."""
    settings = MeshSettings(trace_upstream_spans=upstream_spans)
    plan = make_plan(topology, settings)
    directions = {}
    for name, config in render_all(plan, settings, "127.0.0.1:4317").items():
        for listener in config["static_resources"]["listeners"]:
            directions[(name, listener["name"])] = listener["traffic_direction"]
        for hcm in _hcms(config).values():
            assert hcm["tracing"]["spawn_upstream_span"] is upstream_spans, name
    assert directions == {
        ("edge", "edge"): "INBOUND",
        ("classification-0.sidecar", "ingress"): "INBOUND",
        ("context-0.sidecar", "ingress"): "INBOUND",
        ("orchestration-0.sidecar", "ingress"): "INBOUND",
        ("orchestration-0.sidecar", "egress_classification"): "OUTBOUND",
        ("orchestration-0.sidecar", "egress_context"): "OUTBOUND",
    }
    untraced = render_all(plan, settings, "")
    assert all("tracing" not in hcm for c in untraced.values() for hcm in _hcms(c).values())


KEYED_WRITES = {
    "orchestration": ["Chat"],
    "classification": ["AddExamples"],
    "context": ["AppendMemory", "ClearMemory", "IngestDocuments", "DeleteDocuments"],
}


def _route_list(config: dict, listener: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    listeners = config["static_resources"]["listeners"]
    found = (
        listeners[0] if listener is None else next(x for x in listeners if x["name"] == listener)
    )
    hcm = found["filter_chains"][0]["filters"][0]["typed_config"]
    routes: list[dict] = hcm["route_config"]["virtual_hosts"][0]["routes"]  # type: ignore[type-arg]
    return routes


def test_a_write_that_carries_its_key_is_retried_like_an_idempotent_method(
    topology: Topology,
) -> None:
    """At the edge and at every egress, each unary write has a keyed route (the request_id
    header, UUID-shaped) with the full retry policy and a per-try timeout, placed before
    the write's safe-only route; a sidecar's ingress and the streams have none."""
    settings = MeshSettings()
    plan = make_plan(topology, settings)
    orchestration = plan.replicas["orchestration"][0]
    sidecar = render_sidecar(plan, orchestration, settings)
    callers = {
        "edge": (_route_list(render_edge(plan, settings)), list(KEYED_WRITES)),
        "egress_context": (_route_list(sidecar, "egress_context"), ["context"]),
        "egress_classification": (
            _route_list(sidecar, "egress_classification"),
            ["classification"],
        ),
    }
    per_try = {"Chat": "5.000s", "AddExamples": "10.000s", "AppendMemory": "0.500s"}
    per_try |= {"ClearMemory": "0.500s", "IngestDocuments": "30.000s"}
    per_try |= {"DeleteDocuments": "10.000s"}
    for where, (routes, services) in callers.items():
        names = [r["name"] for r in routes]
        for service in services:
            for method in KEYED_WRITES[service]:
                name = f"{service}.{method}"
                keyed = routes[names.index(f"{name}.keyed")]
                assert names.index(f"{name}.keyed") + 1 == names.index(name), where
                assert keyed["match"]["path"].endswith(f"Service/{method}")
                header = keyed["match"]["headers"][-1]
                assert header["name"] == "x-switchboard-request-id"
                regex = header["string_match"]["safe_regex"]["regex"]
                assert re.fullmatch(regex, str(uuid.uuid4()))
                assert not re.fullmatch(regex, "not-a-uuid")
                policy = keyed["route"]["retry_policy"]
                assert "unavailable" in policy["retry_on"].split(","), (where, name)
                assert "reset" in policy["retry_on"].split(",")
                assert policy["per_try_timeout"] == per_try[method], (where, name)
                unkeyed = routes[names.index(name)]["route"]["retry_policy"]
                assert "unavailable" not in unkeyed["retry_on"].split(",")
                assert "per_try_timeout" not in unkeyed
        for stream in ("orchestration.ChatStream", "classification.ClassifyStream"):
            assert f"{stream}.keyed" not in names
    # the edge also routes gRPC-Web by content type: the keyed route keeps that matcher
    edge = {r["name"]: r for r in callers["edge"][0]}
    assert edge["context.AppendMemory.keyed"]["match"]["headers"][0]["name"] == "content-type"
    ingress = _route_list(render_sidecar(plan, plan.replicas["context"][0], settings), "ingress")
    assert not [r["name"] for r in ingress if r["name"].endswith(".keyed")]
