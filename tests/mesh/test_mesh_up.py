"""`switchboard up/status/stats/down` as a user runs them: real CLI, real Envoy processes.

The apps are fakes (``SWITCHBOARD_MESH_APP_MODULE=tests.mesh.fake_app``) so these
tests do not depend on the models; the chat turn through the real services is in
test_mesh_chat.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard_server.mesh.processes import pid_alive
from tests.mesh.harness import PortPool

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).parents[2]
STRIDE = 7


def _topology(ports: PortPool) -> dict[str, object]:
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    services = {k: raw["services"][k] for k in ("classification", "context")}
    for spec in services.values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = ports()
    return {"edge": {"routes": ["classification", "context"]}, "services": services}


@pytest.fixture
def mesh_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = PortPool()
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(_topology(ports)))
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(topology),
        "SWITCHBOARD_MESH_EDGE_PORT": str(ports()),
        "SWITCHBOARD_MESH_EDGE_ADMIN_PORT": str(ports()),
        "SWITCHBOARD_MESH_REPLICA_PORT_STRIDE": str(STRIDE),
        "SWITCHBOARD_MESH_APP_MODULE": "tests.mesh.fake_app",
        "SWITCHBOARD_MESH_TRACE_RECEIVER": "true",
        "SWITCHBOARD_MESH_RESTART_BACKOFF_INITIAL_S": "0.2",
        "SWITCHBOARD_MESH_HEALTH_INTERVAL_S": "0.2",
        "SWITCHBOARD_OBS_RECEIVER_PORT": str(ports()),
        "SWITCHBOARD_OBS_RECEIVER_QUERY_PORT": str(ports()),
        "SWITCHBOARD_GRACE_PERIOD_S": "0.5",
        "PYTHONPATH": str(ROOT),
    }
    yield env
    # whatever happened, nothing of this mesh may outlive the test
    state_file = tmp_path / "data" / "mesh" / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        for pid in [state["supervisor_pid"], *(p["pid"] for p in state["processes"])]:
            if pid and pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)


def switchboard(
    env: dict[str, str], *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard_server.mesh", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _status(env: dict[str, str]) -> dict[str, object]:
    result = switchboard(env, "status", "--json")
    if not result.stdout.strip():  # no state file yet
        return {}
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _wait(predicate: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError


def test_up_detach_status_stats_restart_down(mesh_env: dict[str, str]) -> None:
    up = switchboard(mesh_env, "up", "--detach", "--replicas", "classification=2")
    assert up.returncode == 0, up.stderr + up.stdout
    edge = f"127.0.0.1:{mesh_env['SWITCHBOARD_MESH_EDGE_PORT']}"
    assert edge in up.stdout
    assert "trace receiver" in up.stdout

    status = _status(mesh_env)
    names = {p["name"]: p for p in status["processes"]}  # type: ignore[attr-defined]
    assert set(names) == {
        "traces",
        "classification-0",
        "classification-1",
        "context-0",
        "classification-0.sidecar",
        "classification-1.sidecar",
        "context-0.sidecar",
        "edge",
    }
    assert all(p["health"] == "SERVING" for p in names.values()), names

    with grpc.insecure_channel(edge) as channel:
        stub = cls_grpc.ClassificationServiceStub(channel)
        for i in range(20):
            stub.Classify(cls_pb.ClassifyRequest(text=f"hi {i}"), timeout=5)

    stats = switchboard(mesh_env, "stats", "--json")
    summaries = {s["envoy"]: s for s in json.loads(stats.stdout)}
    edge_cls = next(c for c in summaries["edge"]["clusters"] if c["cluster"] == "classification")
    assert edge_cls["requests"] >= 20
    assert [h["health"] for h in edge_cls["hosts"]] == ["healthy", "healthy"]
    assert "classification" in switchboard(mesh_env, "stats").stdout

    # a child that dies is restarted (new pid) and becomes healthy again
    victim = names["classification-1"]["pid"]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        now = {p["name"]: p for p in _status(mesh_env)["processes"]}  # type: ignore[attr-defined]
        app = now["classification-1"]
        return app["restarts"] >= 1 and app["pid"] != victim and app["health"] == "SERVING"

    _wait(restarted)
    pids = [p["pid"] for p in _status(mesh_env)["processes"]]  # type: ignore[attr-defined]
    supervisor = status["supervisor_pid"]

    down = switchboard(mesh_env, "down")
    assert down.returncode == 0, down.stderr
    assert not pid_alive(supervisor)  # type: ignore[arg-type]
    assert [p for p in pids if pid_alive(p)] == []
    assert switchboard(mesh_env, "status").returncode != 0


def test_foreground_up_streams_prefixed_logs_and_leaves_no_orphans(
    mesh_env: dict[str, str],
) -> None:
    """The merged log is prefixed by child; a runner killed outright takes its children."""
    env = {**mesh_env, "SWITCHBOARD_MESH_TRACE_RECEIVER": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard_server.mesh", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait(lambda: _status(env).get("status") == "healthy", 60)
        pids = [p["pid"] for p in _status(env)["processes"]]  # type: ignore[attr-defined]
        with grpc.insecure_channel(f"127.0.0.1:{env['SWITCHBOARD_MESH_EDGE_PORT']}") as ch:
            cls_grpc.ClassificationServiceStub(ch).Classify(
                cls_pb.ClassifyRequest(text="hi"), timeout=5
            )
        time.sleep(1.0)  # Envoy flushes its access log every 0.5 s
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: PDEATHSIG must do it
        out, _ = proc.communicate(timeout=30)
        _wait(lambda: not any(pid_alive(p) for p in pids), 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = out.splitlines()
    assert any(line.startswith("classification-0 ") and '"server.ready"' in line for line in lines)
    assert any(line.startswith("edge ") and "/Classify" in line for line in lines)
