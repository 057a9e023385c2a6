"""Acceptance of issue 7 through the real mesh: `switchboard up` with the real apps,
real Envoy sidecars and edge, and the built-in trace receiver.

One module-scoped mesh; the fixture makes a known sequence of calls through the edge
(one traced Chat with a known ``traceparent`` and correlation id, one INVALID_ARGUMENT
Chat), then the tests check the trace tree, the log lines and every app's /metrics.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_client import discover_token
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.testing import PortPool

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).parents[2]
SERVICES = ("classification", "context", "orchestration")
CHAT = "/switchboard.orchestration.v1.OrchestrationService/Chat"
CLASSIFY = "/switchboard.classification.v1.ClassificationService/Classify"
GET_CONTEXT = "/switchboard.context.v1.ContextService/GetContext"
APPEND_MEMORY = "/switchboard.context.v1.ContextService/AppendMemory"
APP_SERVER_SPANS = {
    ("switchboard-orchestration", CHAT),
    ("switchboard-classification", CLASSIFY),
    ("switchboard-context", GET_CONTEXT),
    ("switchboard-context", APPEND_MEMORY),
}
CORRELATION_ID = "corr-obs-acceptance"
TRACE_WAIT_S = 30.0


@dataclass
class Turn:
    env: dict[str, str]
    state: dict[str, Any]
    trace_id: str
    client_span_id: str
    reply: pb.ChatResponse
    log_path: Path

    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.env['SWITCHBOARD_OBS_RECEIVER_QUERY_PORT']}"

    def metrics_url(self, service: str) -> str:
        endpoints = {p["name"]: p["endpoints"] for p in self.state["processes"]}
        return str(endpoints[f"{service}-0"]["metrics"])


def _topology(ports: PortPool) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    for spec in raw["services"].values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = ports()
        if "egress_ports" in spec:
            spec["egress_ports"] = {callee: ports() for callee in spec["egress_ports"]}
    return dict(raw)


def _small_training_set(path: Path, per_intent: int = 20) -> Path:
    """A subset of the bundled train split: the model trains in ~2 s instead of ~25 s."""
    bundled = ROOT / "server/switchboard_server/classification/data/hwu64/train.jsonl"
    kept: dict[str, int] = {}
    lines = []
    for line in bundled.read_text().splitlines():
        intent = json.loads(line)["intent"]
        if kept.get(intent, 0) < per_intent:
            kept[intent] = kept.get(intent, 0) + 1
            lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def _switchboard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def _kill_mesh(state_file: Path) -> None:
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    for pid in [state["supervisor_pid"], *(p["pid"] for p in state["processes"])]:
        if pid and pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    tmp = tmp_path_factory.mktemp("obs_mesh")
    ports = PortPool()
    (tmp / "topology.yaml").write_text(yaml.safe_dump(_topology(ports)))
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(tmp / "topology.yaml"),
        "SWITCHBOARD_MESH_EDGE_PORT": str(ports()),
        "SWITCHBOARD_MESH_EDGE_ADMIN_PORT": str(ports()),
        "SWITCHBOARD_MESH_FRONTDOOR_PORT": str(ports()),
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "true",
        "SWITCHBOARD_OBS_RECEIVER_PORT": str(ports()),
        "SWITCHBOARD_OBS_RECEIVER_QUERY_PORT": str(ports()),
        "SWITCHBOARD_OBS_TRACE_SAMPLE_RATIO": "1.0",
        "SWITCHBOARD_CLASSIFICATION_TRAIN_PATH": str(_small_training_set(tmp / "train.jsonl")),
        "SWITCHBOARD_GRACE_PERIOD_S": "0.5",
        "PYTHONPATH": str(ROOT),
    }
    state_file = tmp / "data" / "mesh" / "state.json"
    try:
        up = _switchboard(env, "up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        edge = f"127.0.0.1:{env['SWITCHBOARD_MESH_EDGE_PORT']}"
        auth = ("authorization", f"Bearer {discover_token(env)}")  # the dev token `up` minted
        with grpc.insecure_channel(edge) as channel:
            stub = pb_grpc.OrchestrationServiceStub(channel)
            reply = stub.Chat(
                pb.ChatRequest(message="how do I reset my password?", session_id="obs-1"),
                metadata=(
                    ("traceparent", f"00-{trace_id}-{span_id}-01"),
                    ("x-correlation-id", CORRELATION_ID),
                    auth,
                ),
                timeout=15,
            )
            with pytest.raises(grpc.RpcError) as bad:
                stub.Chat(
                    pb.ChatRequest(message="", session_id="obs-1"), metadata=(auth,), timeout=15
                )
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        yield Turn(
            env=env,
            state=json.loads(state_file.read_text()),
            trace_id=trace_id,
            client_span_id=span_id,
            reply=reply,
            log_path=tmp / "data" / "mesh" / "mesh.log",
        )
    finally:
        # Graceful `switchboard down` is the mesh tests' subject; here every process of
        # the mesh is killed by PID (group) at once to keep the suite fast.
        _kill_mesh(state_file)


def _trace(turn: Turn, *, complete: bool) -> list[dict[str, Any]]:
    """The spans of the turn's trace; with ``complete``, wait until no parent is missing."""
    deadline = time.monotonic() + TRACE_WAIT_S
    while True:
        reply = httpx.get(f"{turn.query_url()}/traces/{turn.trace_id}", timeout=5)
        spans: list[dict[str, Any]] = reply.json()["spans"] if reply.status_code == 200 else []
        ids = {s["span_id"] for s in spans} | {turn.client_span_id}
        servers = {(s["service"], s["name"]) for s in spans if s["kind"] == "SERVER"}
        whole = servers >= APP_SERVER_SPANS
        if spans and whole and (not complete or all(s["parent_span_id"] in ids for s in spans)):
            return spans
        if time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def _path_to_root(spans: list[dict[str, Any]], span: dict[str, Any]) -> list[tuple[str, str]]:
    by_id = {s["span_id"]: s for s in spans}
    path = []
    current: dict[str, Any] | None = span
    while current is not None:
        path.append((current["service"], current["kind"]))
        current = by_id.get(current["parent_span_id"])
    return path


def test_one_chat_is_one_trace_through_every_sidecar_correctly_parented(turn: Turn) -> None:
    spans = _trace(turn, complete=True)
    assert spans, "no spans of the turn reached the receiver"
    assert {s["trace_id"] for s in spans} == {turn.trace_id}
    by_id = {s["span_id"]: s for s in spans}
    # one root: the edge Envoy's span, child of the caller's span
    roots = [s for s in spans if s["parent_span_id"] not in by_id]
    assert [(r["service"], r["parent_span_id"]) for r in roots] == [
        ("envoy-edge", turn.client_span_id)
    ]

    def one(service: str, kind: str, name: str) -> dict[str, Any]:
        found = [s for s in spans if (s["service"], s["kind"], s["name"]) == (service, kind, name)]
        assert len(found) == 1, (service, kind, name, found)
        return found[0]

    chat = one("switchboard-orchestration", "SERVER", CHAT)
    # one span per Envoy hop (SERVER inbound, CLIENT outbound): no upstream spans
    assert _path_to_root(spans, chat)[1:] == [
        ("envoy-orchestration", "SERVER"),
        ("envoy-edge", "SERVER"),
    ]

    for service, method, stage_name in (
        ("classification", CLASSIFY, "chat.classify"),
        ("context", GET_CONTEXT, "chat.retrieve"),
        ("context", APPEND_MEMORY, "chat.remember"),
    ):
        client = one("switchboard-orchestration", "CLIENT", method)
        # client span <- domain span of its pipeline stage <- the Chat server span
        stage = by_id[client["parent_span_id"]]
        assert (stage["service"], stage["kind"], stage["name"]) == (
            "switchboard-orchestration",
            "INTERNAL",
            stage_name,
        )
        assert stage["parent_span_id"] == chat["span_id"]
        server = one(f"switchboard-{service}", "SERVER", method)
        hops = _path_to_root(spans, server)
        # callee app <- callee sidecar ingress <- caller sidecar egress <- caller client span
        assert hops[: hops.index(("switchboard-orchestration", "CLIENT"))] == [
            (f"switchboard-{service}", "SERVER"),
            (f"envoy-{service}", "SERVER"),
            ("envoy-orchestration", "CLIENT"),
        ], method
        assert _path_to_root(spans, client)[2:] == _path_to_root(spans, chat)
        assert server["start_unix_nano"] >= client["start_unix_nano"]
        assert server["end_unix_nano"] <= client["end_unix_nano"]
    # edge, orchestration ingress, its egress per call (3), the callees' ingress (3)
    assert sum(s["service"].startswith("envoy-") for s in spans) == 8
    assert all(s["status"] != "ERROR" for s in spans)


def _lines(turn: Turn) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for raw in turn.log_path.read_text().splitlines():
        name, sep, rest = raw.partition("|")
        if sep and rest.strip().startswith("{"):
            out.append((name.strip(), json.loads(rest)))
    return out


def test_log_lines_of_the_turn_share_correlation_and_trace_id(turn: Turn) -> None:
    _trace(turn, complete=False)  # the turn is over once its spans are in
    assert turn.reply.correlation_id == CORRELATION_ID
    ours = [(name, e) for name, e in _lines(turn) if e.get("correlation_id") == CORRELATION_ID]
    names = {name for name, _ in ours}
    assert {"orchestration-0", "classification-0", "context-0"} <= names
    assert {e.get("trace_id") for _, e in ours} == {turn.trace_id}
    access = {(name, e["kind"], e["method"]) for name, e in ours if e.get("event") == "rpc"}
    assert {
        ("orchestration-0", "server", "Chat"),
        ("orchestration-0", "client", "Classify"),
        ("orchestration-0", "client", "GetContext"),
        ("orchestration-0", "client", "AppendMemory"),
        ("classification-0", "server", "Classify"),
        ("context-0", "server", "GetContext"),
        ("context-0", "server", "AppendMemory"),
    } <= access
    for _, line in ours:
        if line.get("event") == "rpc":
            assert line["code"] == "OK"
            assert len(line["span_id"]) == 16
            assert line["duration_ms"] >= 0


def _handled(text: str, side: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            ours = sample.labels.get("grpc_service", "").startswith("switchboard.")
            if sample.name == f"grpc_{side}_handled_total" and sample.value and ours:
                out[(sample.labels["grpc_method"], sample.labels["grpc_code"])] = sample.value
    return out


def test_each_service_metrics_count_the_calls_made(turn: Turn) -> None:
    texts = {s: httpx.get(turn.metrics_url(s), timeout=5).text for s in SERVICES}
    assert _handled(texts["orchestration"], "server") == {
        ("Chat", "OK"): 1,
        ("Chat", "INVALID_ARGUMENT"): 1,
    }
    assert _handled(texts["orchestration"], "client") == {
        ("Classify", "OK"): 1,
        ("GetContext", "OK"): 1,
        ("AppendMemory", "OK"): 1,
    }
    assert _handled(texts["classification"], "server") == {("Classify", "OK"): 1}
    assert _handled(texts["context"], "server") == {
        ("GetContext", "OK"): 1,
        ("AppendMemory", "OK"): 1,
    }
    assert "process_resident_memory_bytes" in texts["context"]
