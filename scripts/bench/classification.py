"""Classification benchmark: latency, batch throughput, start-up and HWU64 accuracy.

``python -m scripts.bench classification`` (or ``make bench``). Models are trained once
into ``.switchboard/bench/classification`` (the artifact cache) and reused afterwards.
Set ``BENCH_CLASSIFICATION_BACKENDS=tfidf`` to skip the (slow to train) embeddings models.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.app import create_server
from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.backends.encoder import CachedEncoderFactory
from switchboard_server.classification.dataset import load_jsonl
from switchboard_server.classification.evaluate import evaluate
from switchboard_server.classification.lifecycle import load_or_train
from switchboard_server.classification.model import TrainConfig, TrainedModel
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.sources import bundled_hwu64, load_source
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.observability.logging import configure_logging
from switchboard_server.testing import free_port, sync_probe_channel, wait_serving

ROOT = Path(".switchboard/bench/classification")
SINGLE_RUNS = 300
BATCH_RUNS = 30
BATCH_SIZE = 64


def _model(backend: str, heldout: bool) -> TrainedModel:
    """HWU64 model: heldout=True is the service default (valid split held out),
    False is what ``switchboard eval --train train.jsonl`` trains (split + refit)."""
    settings = ClassificationSettings()
    artifacts = ArtifactStore(ROOT / "eval", keep=10)
    source = load_source(bundled_hwu64("train"), bundled_hwu64("valid") if heldout else None)
    factory = CachedEncoderFactory(
        threads=settings.onnx_threads,
        batch_size=settings.embedding_batch_size,
        max_tokens=settings.embedding_max_tokens,
    )
    config = TrainConfig.from_settings(settings, backend)
    return load_or_train(config, source, [], artifacts, factory)[0]


def _accuracy(backend: str) -> dict[str, Any]:
    test = load_jsonl(bundled_hwu64("test"))
    report = evaluate(_model(backend, heldout=False), test, latency_sample=SINGLE_RUNS)
    return {
        "accuracy": report.accuracy,
        "accuracy_l1": report.accuracy_l1,
        "macro_f1": report.macro_f1,
        "model_latency_ms_p50": report.latency_ms_p50,
        "model_latency_ms_p99": report.latency_ms_p99,
    }


async def _grpc_figures(data_dir: Path) -> dict[str, float]:
    settings = Settings(core=CoreSettings(data_dir=data_dir, grace_period_s=0.0))
    texts = [e.text for e in load_jsonl(bundled_hwu64("test"))]
    started = time.perf_counter()
    server, port = await create_server(settings, ServiceName.CLASSIFICATION, "127.0.0.1:0")
    await server.start()
    start_s = time.perf_counter() - started
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ClassificationServiceStub(channel)
            await stub.Classify(pb.ClassifyRequest(text="warm up"))
            single = []
            for text in texts[:SINGLE_RUNS]:
                t0 = time.perf_counter()
                await stub.Classify(pb.ClassifyRequest(text=text))
                single.append((time.perf_counter() - t0) * 1000)
            cycled = (texts * (1 + BATCH_SIZE * BATCH_RUNS // len(texts)))[
                : BATCH_SIZE * BATCH_RUNS
            ]
            batches = [cycled[i : i + BATCH_SIZE] for i in range(0, len(cycled), BATCH_SIZE)]
            t0 = time.perf_counter()
            for batch in batches:
                await stub.ClassifyBatch(pb.ClassifyBatchRequest(texts=batch))
            elapsed = time.perf_counter() - t0
    finally:
        await server.stop(0)
    return {
        "grpc_classify_ms_p50": round(float(np.percentile(single, 50)), 3),
        "grpc_classify_ms_p99": round(float(np.percentile(single, 99)), 3),
        "grpc_batch64_texts_per_s": round(BATCH_SIZE * len(batches) / elapsed),
        "inprocess_start_to_serving_s_cached": round(start_s, 3),
    }


def _subprocess_start(data_dir: Path) -> float:
    """Seconds from spawning ``python -m switchboard_server classification`` to SERVING."""
    port = free_port()
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(data_dir), "SWITCHBOARD_PORT": str(port)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard_server", "classification"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with sync_probe_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, proc, timeout=120, interval=0.02)
        return round(time.perf_counter() - started, 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run() -> dict[str, Any]:
    configure_logging("warning", "json")  # an access line per RPC is not what we measure
    backends = os.environ.get("BENCH_CLASSIFICATION_BACKENDS", "tfidf,embeddings,hybrid")
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    data_dir = ROOT / "service"
    models = data_dir / ServiceName.CLASSIFICATION.value / "models"
    default = _model("tfidf", heldout=True)
    ArtifactStore(models.parent, keep=10).save(default)  # the service's cached model
    figures.update(asyncio.run(_grpc_figures(data_dir)))
    figures["subprocess_start_to_serving_s_cached"] = _subprocess_start(data_dir)
    for backend in backends.split(","):
        figures[backend] = _accuracy(backend.strip())
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
