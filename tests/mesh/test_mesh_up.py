"""`switchboard up/status/stats/down` as a user runs them: real CLI, real Envoy processes.

The apps are fakes (``SWITCHBOARD_MESH_APP_MODULE=tests.mesh.fake_app``) so these
tests do not depend on the models; the chat turn through the real services is in
test_mesh_chat.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_client import discover_token
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.testing import PortPool
from tests.support.mesh_fakes import CLASSIFICATION, CONTEXT

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).parents[2]
STRIDE = 7


def _topology(ports: PortPool) -> dict[str, object]:
    raw = yaml.safe_load((ROOT / "envoy" / "topology.yaml").read_text())
    services = {k: raw["services"][k] for k in ("classification", "context")}
    for spec in services.values():
        for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
            spec[key] = ports(stride=STRIDE)  # tests run classification=2
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
        "SWITCHBOARD_MESH_FRONTDOOR_PORT": str(ports()),
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
                with contextlib.suppress(ProcessLookupError):
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


def _state(env: dict[str, str]) -> dict[str, Any]:
    """The runner's state file, read directly (cheaper than a `status` process)."""
    path = Path(env["SWITCHBOARD_DATA_DIR"]) / "mesh" / "state.json"
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _serving(target: str, service: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _wait(predicate: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError


def test_up_restarts_a_dead_child_and_down_drains_everything(
    mesh_env: dict[str, str], tmp_path: Path
) -> None:
    """Foreground `up --replicas classification=2`: prefixed merged log, status, stats,
    a killed child restarted with a new pid, then `down` stops every process."""
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log_file:  # a pipe nobody reads would stall the runner
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard_server.mesh",
                "up",
                "--replicas",
                "classification=2",
            ],
            env=mesh_env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait(lambda: _state(mesh_env).get("status") == "healthy", 60)
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
            "frontdoor",
        }
        assert all(p["health"] == "SERVING" for p in names.values()), names

        edge = f"127.0.0.1:{mesh_env['SWITCHBOARD_MESH_EDGE_PORT']}"
        # health through the edge, per exposed service, from the front door
        assert all(_serving(edge, s) for s in ("", CLASSIFICATION, CONTEXT))
        auth = (("authorization", f"Bearer {discover_token(mesh_env)}"),)  # the dev token
        with grpc.insecure_channel(edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            for i in range(20):
                stub.Classify(cls_pb.ClassifyRequest(text=f"hi {i}"), timeout=5, metadata=auth)
        stats = switchboard(mesh_env, "stats", "--json")
        summaries = {s["envoy"]: s for s in json.loads(stats.stdout)}
        edge_cls = next(
            c for c in summaries["edge"]["clusters"] if c["cluster"] == "classification"
        )
        assert edge_cls["requests"] >= 20
        assert [h["health"] for h in edge_cls["hosts"]] == ["healthy", "healthy"]

        victim = names["classification-1"]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            now = {p["name"]: p for p in _state(mesh_env)["processes"]}
            app = now["classification-1"]
            return bool(app["restarts"] >= 1 and app["pid"] != victim) and _serving(
                app["endpoints"]["grpc"], CLASSIFICATION
            )

        _wait(restarted)
        pids = [p["pid"] for p in _state(mesh_env)["processes"]]
        with (
            grpc.insecure_channel(edge) as channel,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            # a write in flight when `down` starts still completes: the edge drains first
            context = ctx_grpc.ContextServiceStub(channel)
            in_flight = pool.submit(
                context.AppendMemory,
                ctx_pb.AppendMemoryRequest(session_id="sleep:2.5"),
                timeout=10,
                metadata=auth,
            )
            time.sleep(0.3)
            down = switchboard(mesh_env, "down")
            assert list(in_flight.result().entry_ids) == ["e1"]
        assert down.returncode == 0, down.stderr
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = log_path.read_text()
    assert proc.returncode == 0, out[-3000:]
    assert [p for p in pids if pid_alive(p)] == []
    assert switchboard(mesh_env, "status").returncode != 0
    lines = out.splitlines()
    assert any(line.startswith("classification-1 ") and '"server.ready"' in line for line in lines)
    assert any(line.startswith("edge ") and "/Classify" in line for line in lines)
    assert any('"child.exited"' in line and "classification-1" in line for line in lines)
    # the chat page's address with the development token, for the user at the terminal;
    # `status` names where the token is, never the token
    token = discover_token(mesh_env)
    assert f"#token={token}" in out
    assert token not in json.dumps(status)


_ORPHAN_RUNNER = """
import asyncio, sys
from switchboard_server.mesh.processes import Child, ChildSpec

async def main():
    child = Child(ChildSpec("sleeper", "test", [sys.executable, "-c",
                  "import time; time.sleep(60)"]), lambda name, line: None)
    await child.start()
    print("PID", child.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_children_die_with_a_killed_runner() -> None:
    """PR_SET_PDEATHSIG: a runner killed outright (no clean-up) leaves no orphan."""
    runner = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_RUNNER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert runner.stdout is not None
        line = ""
        while not line.startswith("PID "):
            line = runner.stdout.readline()
        child_pid = int(line.split()[1])
        assert pid_alive(child_pid)
        runner.kill()
        runner.wait()
        _wait(lambda: not pid_alive(child_pid), 10)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()


def test_render_envoy_writes_one_config_per_envoy(tmp_path: Path) -> None:
    result = switchboard(
        {**os.environ}, "render-envoy", "--out", str(tmp_path), "--replicas", "context=2"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classification-0.sidecar.yaml",
        "context-0.sidecar.yaml",
        "context-1.sidecar.yaml",
        "edge.yaml",
        "orchestration-0.sidecar.yaml",
    ]
    bad = switchboard({**os.environ}, "render-envoy", "--out", str(tmp_path), "--replicas", "x")
    assert bad.returncode == 2
    assert "SERVICE=COUNT" in bad.stderr


def test_up_refuses_ports_in_use(mesh_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(mesh_env["SWITCHBOARD_MESH_EDGE_PORT"])))
        sock.listen()
        result = switchboard(mesh_env, "up", "--detach")
    assert result.returncode == 1
    assert f"edge ({mesh_env['SWITCHBOARD_MESH_EDGE_PORT']})" in result.stderr


def test_up_refuses_several_context_replicas_on_one_sqlite_file(
    mesh_env: dict[str, str],
) -> None:
    result = switchboard(mesh_env, "up", "--detach", "--replicas", "context=2")
    assert result.returncode == 2
    assert "SWITCHBOARD_CONTEXT_STORE=redis" in result.stderr
    assert not (Path(mesh_env["SWITCHBOARD_DATA_DIR"]) / "mesh" / "state.json").exists()


def test_up_that_gives_up_names_each_exited_child_and_its_last_words(
    mesh_env: dict[str, str],
) -> None:
    env = {
        **mesh_env,
        "SWITCHBOARD_MESH_APP_MODULE": "tests.mesh.crashing_app",
        "SWITCHBOARD_MESH_STARTUP_TIMEOUT_S": "3",
    }
    result = switchboard(env, "up", "--detach")
    assert result.returncode == 1, result.stderr
    log = Path(env["SWITCHBOARD_DATA_DIR"]) / "mesh" / "mesh.log"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [unhealthy] = [e for e in events if e["event"] == "mesh.unhealthy"]
    assert unhealthy["exited"] == {
        f"{service}-0": (
            f"exit code 3: {service}: RuntimeError: Failed to bind to address 127.0.0.1:1"
            " (simulated)"
        )
        for service in ("classification", "context")
    }
    exits = [e for e in events if e["event"] == "child.exited"]
    assert exits
    assert all(e["last_output"].endswith("(simulated)") for e in exits)
