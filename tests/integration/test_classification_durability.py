"""kill -9 after AddExamples returned: the example survives, and the restart loads the
cached model instead of training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.testing import free_port, sync_probe_channel, wait_serving
from tests.support.classification import small_dataset

READY_TIMEOUT_S = 90.0


class Process:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard_server", "classification"],
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def events(self) -> list[str]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line).get("event", ""))
            except ValueError:
                continue
        return out

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.handle.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[object]:
    started: list[Process] = []
    data = small_dataset(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_CLASSIFICATION_TRAIN_PATH": str(data),
        "SWITCHBOARD_CLASSIFICATION_RETRAIN_DELAY_S": "30",
    }

    def start(name: str) -> tuple[Process, str]:
        process = Process(env, tmp_path / f"{name}.log")
        started.append(process)
        return process, f"127.0.0.1:{port}"

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


def serving(target: str, process: Process) -> None:
    with sync_probe_channel(target) as channel:
        wait_serving(
            channel,
            process.proc,
            timeout=READY_TIMEOUT_S,
            exited=lambda: process.log.read_text()[-2000:],
        )


def test_added_examples_survive_kill_9_and_restart_does_not_retrain(launch) -> None:
    first, target = launch("first")
    serving(target, first)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        version = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).model_version
        reply = stub.AddExamples(
            pb.AddExamplesRequest(
                examples=[pb.Example(text="open the pod bay doors hal", intent="scifi/doors")]
            ),
            timeout=10,
        )
        assert reply.runtime_example_count == 1
    first.stop(signal.SIGKILL)  # no graceful anything
    assert first.proc.returncode == -signal.SIGKILL
    assert "model.trained" in first.events()

    second, target = launch("second")
    serving(target, second)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert info.runtime_example_count == 1
        assert info.model_version == version  # the cached base model, not a retrained one
        result = stub.Classify(pb.ClassifyRequest(text="open the pod bay doors hal"), timeout=10)
        assert result.classification.intent == "scifi/doors"
    events = second.events()
    assert "model.loaded" in events
    assert "model.trained" not in events
    second.stop()
    assert second.proc.returncode == 0
