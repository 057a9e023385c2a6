"""Canary and shadow rollouts through the real mesh: a classification ``candidate``
variant (a different model: trained without three of HWU64's domains) beside
``stable``, the split and the mirror at orchestration's sidecar, the policy changed
by ``switchboard rollout``.

Calls go to orchestration's egress listener for classification (the caller's Envoy,
where the policy lives) with the session bucket header orchestration sends."""

from __future__ import annotations

import asyncio
import json
import os
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
from prometheus_client.parser import text_string_to_metric_families

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as orch_grpc
from switchboard_server.mesh.peer import secure_channel
from switchboard_server.mesh.rollout import latency
from switchboard_server.rollout_headers import BUCKET_HEADER, TOTAL_WEIGHT, session_bucket
from switchboard_server.testing import PortPool
from tests.support.mesh_up import ROOT, UpMesh, mesh_up
from tests.support.prometheus import prometheus

pytestmark = pytest.mark.mesh

STRIDE = 11
SESSIONS = 1000
OUT_OF_SCOPE = "zxqv blorp quux frobnicate wibble"


HWU64 = ROOT / "server" / "switchboard_server" / "classification" / "data" / "hwu64"
# The candidate model never saw these domains: it answers their texts differently.
LEFT_OUT = ("weather", "music", "transport")


def _candidate_data(tmp: Path) -> Path:
    path = tmp / "candidate-train.jsonl"
    lines = (HWU64 / "train.jsonl").read_text().splitlines()
    kept = [x for x in lines if json.loads(x)["intent"].split("/")[0] not in LEFT_OUT]
    path.write_text("\n".join(kept) + "\n")
    return path


def _variants(raw: dict[str, Any], train: Path) -> None:
    ports = PortPool()
    spec = raw["services"]["classification"]
    for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
        spec[key] = ports(stride=STRIDE)  # replica 1 (the candidate) is at +STRIDE
    spec["variants"] = {"candidate": {"env": {"SWITCHBOARD_CLASSIFICATION_TRAIN_PATH": str(train)}}}
    spec["rollout"] = {
        "split_methods": ["Classify", "ClassifyStream"],
        "shadow_methods": ["Classify"],
    }


def admin(endpoints: dict[str, str]) -> int:
    return int(endpoints["admin"].rsplit(":", 1)[1])


@dataclass(frozen=True)
class Rollout:
    mesh: UpMesh
    env: dict[str, str]
    egress: str  # orchestration's egress listener for classification
    caller_admin: int
    apps: dict[str, str]  # variant -> app metrics URL
    comparator: str  # its metrics URL
    sidecars: dict[str, str]  # variant -> sidecar ingress
    sidecar_admins: dict[str, int]

    def rollout(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.rollout_env({}, *args)

    def rollout_env(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        """``switchboard rollout ...`` with ``env`` on top of the mesh's."""
        return subprocess.run(
            [sys.executable, "-m", "switchboard_server.mesh", "rollout", *args],
            env={**self.env, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


_PORTS = PortPool()
ENV = {
    "SWITCHBOARD_MESH_ROLLOUT_COMPARATOR_PORT": str(_PORTS()),
    "SWITCHBOARD_MESH_ROLLOUT_COMPARATOR_METRICS_PORT": str(_PORTS()),
    "SWITCHBOARD_MESH_REPLICA_PORT_STRIDE": str(STRIDE),
    "SWITCHBOARD_MESH_FAULT_INJECTION": "true",
    "SWITCHBOARD_CLASSIFICATION_DISCOVERY_ENABLED": "true",
    "SWITCHBOARD_MESH_ROLLOUT_WINDOW_S": "4",
    "SWITCHBOARD_MESH_ROLLOUT_MIN_REQUESTS": "10",
}


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    tmp = tmp_path_factory.mktemp("rollout")
    train = _candidate_data(tmp)
    with mesh_up(tmp, ENV, edit_topology=lambda raw: _variants(raw, train)) as mesh:
        state = json.loads((mesh.data_dir / "mesh" / "state.json").read_text())
        procs = {p["name"]: p["endpoints"] for p in state["processes"]}
        env = {
            **os.environ,
            **ENV,
            "SWITCHBOARD_DATA_DIR": str(mesh.data_dir),
            "SWITCHBOARD_MESH_TOPOLOGY_FILE": str(tmp / "topology.yaml"),
        }
        orch = procs["orchestration-0.sidecar"]
        yield Rollout(
            mesh=mesh,
            env=env,
            egress=orch["egress.classification"],
            caller_admin=admin(orch),
            apps={
                "stable": procs["classification-0"]["metrics"],
                "candidate": procs["classification-1"]["metrics"],
            },
            comparator=procs["comparator"]["metrics"],
            sidecars={
                "stable": procs["classification-0.sidecar"]["grpc"],
                "candidate": procs["classification-1.sidecar"]["grpc"],
            },
            sidecar_admins={
                "stable": admin(procs["classification-0.sidecar"]),
                "candidate": admin(procs["classification-1.sidecar"]),
            },
        )


def _runtime(admin_port: int) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{admin_port}/runtime", timeout=5)
    entries: dict[str, Any] = response.json()["entries"]
    return {k: v.get("final_value") for k, v in entries.items()}


def _wait_runtime(r: Rollout, key: str, value: int) -> None:
    """Until the caller's Envoy has loaded the swapped policy (its file watch)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _runtime(r.caller_admin).get(key) == str(value):
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} never became {value}: {_runtime(r.caller_admin)}")


def _set(r: Rollout, *args: str) -> None:
    done = r.rollout(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def _app_metric(url: str, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def _classify(
    stub: pb_grpc.ClassificationServiceAsyncStub, session: str, text: str = "what is the weather"
) -> pb.ClassifyResponse:
    request = pb.ClassifyRequest(text=text, session_id=session)
    metadata = ((BUCKET_HEADER, str(session_bucket(session))),)
    response: pb.ClassifyResponse = await stub.Classify(request, timeout=10, metadata=metadata)
    return response


def _as_operator(r: Rollout, sidecar: str) -> grpc.aio.Channel:
    """A classification sidecar's public port takes mutual TLS only: call it as the
    operator (what `switchboard status` and the CLI do)."""
    return secure_channel(
        sidecar, r.mesh.data_dir / "mesh" / "certs" / "operator", "classification"
    )


async def _version(r: Rollout, target: str) -> str:
    async with _as_operator(r, target) as channel:
        stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(channel)
        response = await _classify(stub, "probe")
    return response.classification.model_version


def test_split_is_weighted_and_sticky_per_session(rollout: Rollout) -> None:
    versions = {v: asyncio.run(_version(rollout, t)) for v, t in rollout.sidecars.items()}
    assert versions["stable"] != versions["candidate"]  # two models
    _set(rollout, "set", "classification", "candidate=10")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 1000)

    async def run() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        async with grpc.aio.insecure_channel(rollout.egress) as channel:
            stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(
                channel
            )
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    response = await _classify(stub, f"session-{i}")
                seen.setdefault(f"session-{i}", set()).add(response.classification.model_version)

            for _ in range(2):  # every session twice: it must not flip
                await asyncio.gather(*(one(i) for i in range(SESSIONS)))
        return seen

    seen = asyncio.run(run())
    assert all(len(v) == 1 for v in seen.values()), "a session flipped between variants"
    on_candidate = {s for s, v in seen.items() if v == {versions["candidate"]}}
    # 10 % of 1,000 sessions: binomial sd = sqrt(1000 * 0.1 * 0.9) = 9.5; 4 sd either side
    assert 62 <= len(on_candidate) <= 138, len(on_candidate)
    # and exactly the sessions whose bucket falls in the candidate's share
    expected = {s for s in seen if session_bucket(s) < TOTAL_WEIGHT // 10}
    assert on_candidate == expected
    _set(rollout, "rollback", "classification")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 0)


TEXTS = [
    "set an alarm for seven",
    "what is the weather tomorrow",
    "play some jazz",
    "tell me a joke",
    "how do I get to the station",
    "remind me to call mum",
    "turn the lights off",
    "what's on my calendar",
    "order a pizza",
    "book a table for two",
    "is it going to rain",
    "wake me up at six",
    "I want to hear something relaxing",
    "the price of bitcoin",
    "translate hello to french",
    "what time is it in tokyo",
    "email john about the meeting",
    "how much is a taxi to the airport",
    "recommend a movie",
    "definition of serendipity",
]


async def _agreement(r: Rollout, texts: list[str]) -> dict[str, int]:
    """How many texts the two variants answer with the same intent, and the same l1."""
    answers: dict[str, list[pb.Classification]] = {}
    for variant, target in r.sidecars.items():
        async with _as_operator(r, target) as channel:
            stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(
                channel
            )
            answers[variant] = [
                (await _classify(stub, f"check-{i}", t)).classification for i, t in enumerate(texts)
            ]
    pairs = list(zip(answers["stable"], answers["candidate"], strict=True))
    return {
        "intent": sum(a.intent == b.intent for a, b in pairs),
        "l1": sum(a.hierarchy.l1 == b.hierarchy.l1 for a, b in pairs),
    }


def test_orchestration_keeps_each_conversation_on_one_variant(rollout: Rollout) -> None:
    """Chat through the edge: orchestration sends the session's bucket, so at 50 % the
    turns of a session under the line all reach the candidate and the others none."""
    on_candidate = next(f"chat-{i}" for i in range(100) if session_bucket(f"chat-{i}") < 5000)
    on_stable = next(f"chat-{i}" for i in range(100) if session_bucket(f"chat-{i}") >= 5000)
    _set(rollout, "set", "classification", "candidate=50")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 5000)
    live = {"variant": "candidate", "traffic": "live"}
    name = "switchboard_classification_variant_verdicts_total"

    def candidate_live() -> float:
        url = rollout.apps["candidate"]
        return sum(_app_metric(url, name, {**live, "scope": s}) for s in ("in", "out"))

    before = candidate_live()

    weather = [
        "what is the weather tomorrow",
        "is it going to rain today",
        "what's the weather like in london",
        "will it be sunny this weekend",
    ]

    async def chat() -> dict[str, list[str]]:
        l1s: dict[str, list[str]] = {on_candidate: [], on_stable: []}
        async with grpc.aio.insecure_channel(rollout.mesh.edge) as channel:
            stub = orch_grpc.OrchestrationServiceStub(channel)
            for text in weather:
                for session in (on_candidate, on_stable):
                    reply = await stub.Chat(
                        orch_pb.ChatRequest(message=text, session_id=session),
                        timeout=10,
                        metadata=rollout.mesh.metadata,
                    )
                    assert list(reply.degraded) == []
                    l1s[session].append(reply.intent.l1)
        return l1s

    l1s = asyncio.run(chat())
    assert candidate_live() - before == 4  # the candidate session's four turns, no more
    # Stable knows the weather; the candidate never saw it: each session had one model.
    assert l1s[on_stable] == ["weather"] * 4
    assert "weather" not in l1s[on_candidate]
    _set(rollout, "rollback", "classification")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 0)


def test_shadow_reaches_candidate_and_caller_sees_stable(rollout: Rollout) -> None:
    versions = {v: asyncio.run(_version(rollout, t)) for v, t in rollout.sidecars.items()}
    _set(rollout, "shadow", "classification", "candidate=100")
    _wait_runtime(rollout, "rollout.classification.shadow.candidate", 100)
    shadow = {"variant": "candidate", "traffic": "shadow"}
    name = "switchboard_classification_variant_verdicts_total"
    before = sum(
        _app_metric(rollout.apps["candidate"], name, {**shadow, "scope": s}) for s in ("in", "out")
    )
    kept = "switchboard_classification_discovery_kept_total"
    kept_before = {v: _app_metric(url, kept, {"outcome": "ok"}) for v, url in rollout.apps.items()}

    texts = [OUT_OF_SCOPE if i % 2 else TEXTS[i % len(TEXTS)] for i in range(40)]
    compared_before = _app_metric(
        rollout.comparator, "switchboard_rollout_shadow_compared_total", {"variant": "candidate"}
    )
    agreed_before = {
        level: _app_metric(
            rollout.comparator,
            "switchboard_rollout_shadow_agreed_total",
            {"variant": "candidate", "level": level},
        )
        for level in ("intent", "l1")
    }

    async def run() -> list[str]:
        async with grpc.aio.insecure_channel(rollout.egress) as channel:
            stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(
                channel
            )
            answers = []
            for i, text in enumerate(texts):
                response = await _classify(stub, f"shadow-{i}", text)
                answers.append(response.classification.model_version)
            return answers

    answers = asyncio.run(run())
    assert set(answers) == {versions["stable"]}  # the caller only ever sees stable
    deadline = time.monotonic() + 10
    mirrored = 0.0
    while time.monotonic() < deadline:
        mirrored = (
            sum(
                _app_metric(rollout.apps["candidate"], name, {**shadow, "scope": s})
                for s in ("in", "out")
            )
            - before
        )
        if mirrored >= 40:
            break
        time.sleep(0.1)
    assert mirrored == 40
    # Stable kept its out-of-scope texts for discovery; the candidate wrote nothing.
    kept_after = {v: _app_metric(url, kept, {"outcome": "ok"}) for v, url in rollout.apps.items()}
    assert kept_after["stable"] - kept_before["stable"] >= 20
    assert kept_after["candidate"] == kept_before["candidate"]
    # The comparator joined every copy with stable's answer; its agreement is the one
    # computed here from both variants' answers to the same texts (deterministic models).
    expected = asyncio.run(_agreement(rollout, texts))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        compared = _app_metric(
            rollout.comparator,
            "switchboard_rollout_shadow_compared_total",
            {"variant": "candidate"},
        )
        if compared - compared_before >= 40:
            break
        time.sleep(0.1)
    assert compared - compared_before == 40
    for level in ("intent", "l1"):
        agreed = _app_metric(
            rollout.comparator,
            "switchboard_rollout_shadow_agreed_total",
            {"variant": "candidate", "level": level},
        )
        assert agreed - agreed_before[level] == expected[level], level
    assert expected["intent"] < 40  # the two models do disagree somewhere: a real check
    _set(rollout, "rollback", "classification")
    _wait_runtime(rollout, "rollout.classification.shadow.candidate", 0)


def test_status_puts_the_variants_side_by_side(rollout: Rollout) -> None:
    """After the shadow test: its mirrored calls and their agreement are in the status."""
    done = rollout.rollout("status", "classification", "--json")
    doc = json.loads(done.stdout)
    candidate = doc["variants"]["candidate"]
    assert candidate["shadow_verdicts"] >= 40
    assert candidate["compared"] >= 40
    assert 0 <= candidate["agreed_intent"] <= candidate["compared"]
    assert doc["variants"]["stable"]["calls"] > 0  # live calls seen by the caller's sidecar
    text = rollout.rollout("status", "classification")
    assert "agree: intent" in text.stdout
    assert "candidate:" in text.stdout  # the verdict line
    print(text.stdout)


async def _load(target: str, stop: asyncio.Event) -> tuple[int, int, dict[str, int]]:
    """Steady calls from 4 workers until ``stop``: (ok, failed, answers by version)."""
    ok = failed = 0
    by_version: dict[str, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(channel)

        async def worker(w: int) -> None:
            nonlocal ok, failed
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    response = await _classify(stub, f"load-{w}-{i % 50}")
                except grpc.aio.AioRpcError:
                    failed += 1
                    continue
                ok += 1
                version = response.classification.model_version
                by_version[version] = by_version.get(version, 0) + 1

        await asyncio.gather(*(worker(w) for w in range(4)))
    return ok, failed, by_version


def test_set_promote_rollback_under_load_fail_nothing(rollout: Rollout) -> None:
    versions = {v: asyncio.run(_version(rollout, t)) for v, t in rollout.sidecars.items()}

    async def run() -> tuple[int, int, dict[str, int]]:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(rollout.egress, stop))
        steps = [
            ("set", "classification", "candidate=10"),
            ("shadow", "classification", "candidate=50"),
            ("set", "classification", "candidate=50"),
            ("promote", "classification", "candidate"),
            ("rollback", "classification"),
        ]
        for step in steps:
            await asyncio.sleep(0.7)
            done = await asyncio.to_thread(rollout.rollout, *step)
            assert done.returncode == 0, done.stderr
        await asyncio.sleep(0.7)
        stop.set()
        return await load

    ok, failed, by_version = asyncio.run(run())
    assert failed == 0
    assert ok > 100
    assert by_version.get(versions["candidate"], 0) > 0  # the changes took effect
    assert by_version.get(versions["stable"], 0) > 0


def test_sidecar_restart_keeps_the_policy(rollout: Rollout) -> None:
    """The policy is on disk: the runtime tree a restarted sidecar loads."""
    _set(rollout, "set", "classification", "candidate=25")
    policy = json.loads((rollout.mesh.data_dir / "mesh" / "rollout" / "policy.json").read_text())
    assert policy["classification"]["weights"] == {"candidate": 25}
    current = rollout.mesh.data_dir / "mesh" / "rollout" / "current"
    weight = (
        current / "envoy" / "rollout" / "classification" / "weight" / "classification-candidate"
    )
    assert weight.read_text() == "2500"
    _set(rollout, "rollback", "classification")


def test_automatic_rollback_of_a_failing_candidate(rollout: Rollout) -> None:
    # The candidate's sidecar answers every call UNAVAILABLE (its fault filter).
    admin = rollout.sidecar_admins["candidate"]
    httpx.post(
        f"http://127.0.0.1:{admin}/runtime_modify?fault.http.abort.abort_percent=100", timeout=5
    ).raise_for_status()
    try:
        _set(rollout, "set", "classification", "candidate=50")
        _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 5000)

        async def run() -> tuple[subprocess.CompletedProcess[str], tuple[int, int, dict[str, int]]]:
            stop = asyncio.Event()
            load = asyncio.create_task(_load(rollout.egress, stop))
            watch = await asyncio.to_thread(
                rollout.rollout, "watch", "classification", "candidate", "--once"
            )
            stop.set()
            return watch, await load

        watch, (_, failed, _) = asyncio.run(run())
        assert watch.returncode == 1, watch.stdout + watch.stderr
        assert "error rate" in watch.stdout
        assert failed > 0  # the candidate did fail its sessions
        policy = json.loads(
            (rollout.mesh.data_dir / "mesh" / "rollout" / "policy.json").read_text()
        )
        assert policy["classification"]["weights"] == {}
        assert policy["classification"]["last_change"].startswith("auto-rollback")
        _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 0)

        async def after() -> tuple[int, int, dict[str, int]]:
            stop = asyncio.Event()
            load = asyncio.create_task(_load(rollout.egress, stop))
            await asyncio.sleep(1.0)
            stop.set()
            return await load

        ok, failed, _ = asyncio.run(after())
        assert failed == 0  # everyone back on stable
        assert ok > 0
    finally:
        httpx.post(
            f"http://127.0.0.1:{admin}/runtime_modify?fault.http.abort.abort_percent=0", timeout=5
        )


async def _steady(target: str, sessions: list[str], stop: asyncio.Event) -> tuple[int, int]:
    """One worker per session, calling until ``stop``: (ok, failed)."""
    ok = failed = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(channel)

        async def worker(session: str) -> None:
            nonlocal ok, failed
            while not stop.is_set():
                try:
                    await _classify(stub, session)
                except grpc.aio.AioRpcError:
                    failed += 1
                    continue
                ok += 1

        await asyncio.gather(*(worker(s) for s in sessions))
    return ok, failed


async def _burst(target: str, calls: int, prefix: str) -> int:
    """``calls`` calls, 16 at a time, one session each: how many failed."""
    failed = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub: pb_grpc.ClassificationServiceAsyncStub = pb_grpc.ClassificationServiceStub(channel)
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            nonlocal failed
            async with sem:
                try:
                    await _classify(stub, f"{prefix}-{i}")
                except grpc.aio.AioRpcError:
                    failed += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
    return failed


def _sessions(prefix: str, on_candidate: bool, n: int) -> list[str]:
    """``n`` sessions whose bucket puts them on the candidate at 50 % (or on stable)."""
    names = (f"{prefix}-{i}" for i in range(10_000))
    return [s for s in names if (session_bucket(s) < TOTAL_WEIGHT // 2) == on_candidate][:n]


def test_automatic_rollback_of_a_candidate_slow_in_the_window(rollout: Rollout) -> None:
    """The candidate answers fast for a while, then its sidecar delays every call by
    300 ms (its fault filter; Classify's per-try timeout is 400 ms, so nothing fails):
    the window's p99 is the slow one, since start it is diluted by the fast history, and
    `watch` rolls back on the window's."""
    _set(rollout, "set", "classification", "candidate=100")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 10_000)
    assert asyncio.run(_burst(rollout.egress, 2000, "fast")) == 0  # a history of fast calls
    _set(rollout, "set", "classification", "candidate=50")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 5000)
    admin = rollout.sidecar_admins["candidate"]
    delay = "fault.http.delay.fixed_delay_percent=100&fault.http.delay.fixed_duration_ms=300"
    httpx.post(f"http://127.0.0.1:{admin}/runtime_modify?{delay}", timeout=5).raise_for_status()
    # a window spanning two of Envoy's 5 s histogram flushes; 5 calls suffice to judge
    env = {"SWITCHBOARD_MESH_ROLLOUT_WINDOW_S": "10", "SWITCHBOARD_MESH_ROLLOUT_MIN_REQUESTS": "5"}
    sessions = _sessions("slow", True, 1) + _sessions("slow", False, 2)
    try:

        async def run() -> tuple[subprocess.CompletedProcess[str], tuple[int, int]]:
            stop = asyncio.Event()
            load = asyncio.create_task(_steady(rollout.egress, sessions, stop))
            watch = await asyncio.to_thread(
                rollout.rollout_env, env, "watch", "classification", "candidate", "--once"
            )
            stop.set()
            return watch, await load

        watch, (ok, failed) = asyncio.run(run())
        assert watch.returncode == 1, watch.stdout + watch.stderr
        assert "WORSE - p99" in watch.stdout, watch.stdout
        assert failed == 0  # slow, not failing: only latency can tell
        assert ok > 0
        # the window's p99 is a slow one (in Envoy's 250-500 ms bucket); since start the
        # fast history dilutes it
        line = next(x for x in watch.stdout.splitlines() if x.startswith("window "))
        window_p99, total_p99 = (float(part.split(" ms")[0]) for part in line.split("p99 ")[1:])
        assert window_p99 >= 250.0, line
        assert total_p99 < window_p99, line
        # `status` shows watch's window beside the since-start figures, labelled
        status = rollout.rollout_env(env, "status", "classification").stdout
        assert "last 10 s (watch," in status, status
        assert "since start" in status, status
        policy = json.loads(
            (rollout.mesh.data_dir / "mesh" / "rollout" / "policy.json").read_text()
        )
        assert policy["classification"]["weights"] == {}
        assert "p99" in policy["classification"]["last_change"]
        _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 0)
    finally:
        httpx.post(
            f"http://127.0.0.1:{admin}/runtime_modify?fault.http.delay.fixed_delay_percent=0",
            timeout=5,
        )


def _status(r: Rollout, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = r.rollout_env(env, "status", "classification", "--json", *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def _p99(buckets: dict[str, float]) -> float | None:
    return latency.quantile(0.99, {float(le): n for le, n in buckets.items()})


def test_prometheus_source_reports_what_the_sidecars_do(rollout: Rollout, tmp_path: Path) -> None:
    """A real Prometheus scrapes the mesh (the Compose scrape config's labels); over the
    same traffic, `status --prometheus` reports the admin collector's figures: since
    start exactly (once both have the last flush), the window within Prometheus's
    extrapolation, and the window's p99 from the same buckets."""
    processes = json.loads((rollout.mesh.data_dir / "mesh" / "state.json").read_text())["processes"]
    _set(rollout, "set", "classification", "candidate=50")
    _wait_runtime(rollout, "rollout.classification.weight.classification-candidate", 5000)
    admin = rollout.sidecar_admins["candidate"]
    abort = f"http://127.0.0.1:{admin}/runtime_modify?fault.http.abort.abort_percent="
    # Envoy creates a cluster's grpc counters at its first call (and `failure` at its
    # first error): create them before Prometheus's first scrape, or `increase` would
    # miss what they held when they first appeared (as with any new series)
    httpx.post(f"{abort}100", timeout=5).raise_for_status()
    try:
        assert asyncio.run(_burst(rollout.egress, 20, "warm")) > 0
    finally:
        httpx.post(f"{abort}0", timeout=5).raise_for_status()
    with prometheus(tmp_path, processes, interval_s=1.0) as url:
        before = _status(rollout, {})
        # the candidate fails a quarter of its calls: errors must match too
        httpx.post(f"{abort}25", timeout=5).raise_for_status()
        try:
            failed = asyncio.run(_burst(rollout.egress, 600, "prom"))
        finally:
            httpx.post(f"{abort}0", timeout=5).raise_for_status()
        time.sleep(7)  # Envoy's 5 s histogram flush, then a 1 s scrape
        after = _status(rollout, {})
        env = {"SWITCHBOARD_MESH_ROLLOUT_WINDOW_S": "30"}  # the whole test's traffic
        prom = _status(rollout, env, "--prometheus", url)
        # `watch --prometheus` judges the same window, and acts on the same verdict
        watch = rollout.rollout_env(
            env, "watch", "classification", "candidate", "--prometheus", url, "--once"
        )
        text = rollout.rollout_env(env, "status", "classification", "--prometheus", url).stdout
    assert prom["source"] == "prometheus"
    (judged,) = prom["verdicts"]
    assert watch.returncode == (0 if judged["ok"] else 1), watch.stdout + watch.stderr
    reading = " ".join(judged["text"].split()[:2])  # "candidate: OK" or "candidate: WORSE"
    assert reading in watch.stdout, watch.stdout
    for variant in ("stable", "candidate"):
        mine, theirs = after["variants"][variant], prom["variants"][variant]
        for key in ("calls", "failures", "live_verdicts", "out_of_scope"):
            assert theirs[key] == mine[key], (variant, key)
        assert theirs["p99_ms"] == pytest.approx(mine["p99_ms"], rel=1e-6), variant
        assert theirs["p50_ms"] == pytest.approx(mine["p50_ms"], rel=1e-6), variant
        calls = mine["calls"] - before["variants"][variant]["calls"]
        assert calls > 100, variant
        window = prom["window"][variant]
        assert abs(window["calls"] - calls) <= 0.15 * calls + 2, (variant, window, calls)
        # the window's p99: Prometheus's histogram_quantile over the bucket rates is
        # ours over the bucket deltas, up to its extrapolation (per series: a bucket that
        # was at 0 when the window began is extrapolated less than the others)
        delta = {
            le: n - before["variants"][variant]["latency_buckets"].get(le, 0.0)
            for le, n in mine["latency_buckets"].items()
        }
        assert window["p99_ms"] == pytest.approx(_p99(delta), rel=0.1), variant
    errors = (
        after["variants"]["candidate"]["failures"] - before["variants"]["candidate"]["failures"]
    )
    # the candidate did fail calls; Envoy's retries hid most of them from the caller (a
    # call fails only when every try was aborted: a few, or none, in 600)
    assert errors > 0
    assert failed <= errors
    window_errors = prom["window"]["candidate"]["failures"]
    assert abs(window_errors - errors) <= 0.15 * errors + 2, (window_errors, errors)
    assert "last 30 s" in text
    assert "since start" in text
    print(text, watch.stdout)
    _set(rollout, "rollback", "classification")
