"""Intent discovery on HWU64: do clusters of out-of-scope traffic recover held-out intents?

``python -m scripts.bench discovery``. HELD_OUT intents are removed from the training
and validation data; a tfidf model is trained on the rest; the test split (every intent)
is sent as traffic through ``Classifier.classify`` with a real discovery store (the path
the servicer uses); the texts it keeps are clustered by each method and scored against
their true intents with scikit-learn's metrics:

* purity: share of clustered texts whose cluster's majority intent is their own;
* ARI: adjusted Rand index over every kept text (noise counted as singletons);
* recovered: held-out intents that are the majority of at least one cluster;
* clustered: share of kept texts in some cluster (the rest is noise).

``keep_cost`` is the price of keeping: the in-process latency of ``Classifier.classify``
for texts answered out of scope, with the discovery store and without it, measured in
alternating rounds in one run (medians per call and their ratio).

``BENCH_DISCOVERY_EMBEDDINGS=0`` skips the MiniLM rows.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.backends.encoder import CachedEncoderFactory
from switchboard_server.classification.dataset import Example, load_jsonl
from switchboard_server.classification.discovery import NOISE, DiscoveryConfig, discover
from switchboard_server.classification.domain import Classifier
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.sources import DataSource, bundled_hwu64
from switchboard_server.classification.store import ExampleStore
from switchboard_server.classification.store.outofscope import OutOfScopeStore
from switchboard_server.classification.verdict import Options

HELD_OUT_COUNT = 10
SEED = 26
CONFIGS = [
    DiscoveryConfig("agglomerative", "tfidf", 0.85),
    DiscoveryConfig("agglomerative", "tfidf", 0.9),
    DiscoveryConfig("agglomerative", "tfidf", 0.95),
    DiscoveryConfig("hdbscan", "tfidf"),
    DiscoveryConfig("agglomerative", "embeddings", 0.7),
    DiscoveryConfig("agglomerative", "embeddings", 0.8),
    DiscoveryConfig("agglomerative", "embeddings", 0.85),
    DiscoveryConfig("hdbscan", "embeddings"),
]
# "test": the test split is the traffic (every intent; ~17 texts per held-out intent);
# "test+train": the held-out intents' train texts (never trained on) are sent too
TRAFFIC = ("test", "test+train")


def held_out_intents(train: list[Example]) -> list[str]:
    intents = sorted({e.intent for e in train})
    return sorted(random.Random(SEED).sample(intents, HELD_OUT_COUNT))


async def kept_traffic(work: Path, held: set[str], traffic: str) -> list[tuple[str, str]]:
    """(text, true intent) of every text sent that the classifier answered out of scope."""
    everything = load_jsonl(bundled_hwu64("train"))
    train = [e for e in everything if e.intent not in held]
    valid = [e for e in load_jsonl(bundled_hwu64("valid")) if e.intent not in held]
    test = load_jsonl(bundled_hwu64("test"))
    if traffic == "test+train":
        test += [e for e in everything if e.intent in held]
    settings = ClassificationSettings(discovery_enabled=True, retrain_enabled=False)
    factory = CachedEncoderFactory(threads=2, batch_size=64, max_tokens=128)
    with ThreadPoolExecutor(2) as inference, ThreadPoolExecutor(1) as training:
        classifier = Classifier(
            settings,
            ArtifactStore(work / "models", keep=2),
            factory,
            inference=inference,
            training=training,
        )
        examples = ExampleStore(work / "examples.sqlite3")
        store = OutOfScopeStore(
            work / "discovery.sqlite3",
            salt=b"bench-salt-0123456789",
            max_messages=100_000,
            max_age_s=86_400.0,
        )
        source = DataSource(Path("hwu64-train"), Path("hwu64-valid"), train, valid)
        await classifier.start(source, examples, [], "tfidf", discovery=store)
        options = Options(threshold=None, top_k=3, include_debug=False)
        for i, example in enumerate(test):
            await classifier.classify([example.text], options, [f"s{i % 97}"])
        await classifier.stop()
        kept = store.all()
        store.close()
        examples.close()
    truth = {e.text: e.intent for e in test}  # (a text with two intents: the last one)
    return [(m.text, truth[m.text]) for m in kept]


KEEP_ROUNDS = 7
KEEP_CALLS = 200


async def keep_cost(work: Path) -> dict[str, Any]:
    """Median ms per out-of-scope Classify with and without keeping, side by side."""
    train = load_jsonl(bundled_hwu64("train"))
    valid = load_jsonl(bundled_hwu64("valid"))
    texts = [e.text for e in load_jsonl(bundled_hwu64("test"))][:KEEP_CALLS]
    settings = ClassificationSettings(retrain_enabled=False)
    factory = CachedEncoderFactory(threads=2, batch_size=64, max_tokens=128)
    forced = Options(threshold=0.999, top_k=3, include_debug=False)  # every answer oos
    timings: dict[str, list[float]] = {"off": [], "on": []}
    with ThreadPoolExecutor(2) as inference, ThreadPoolExecutor(1) as training:
        examples = ExampleStore(work / "examples.sqlite3")
        store = OutOfScopeStore(
            work / "discovery.sqlite3",
            salt=b"bench-salt-0123456789",
            max_messages=10_000,
            max_age_s=86_400.0,
        )
        source = DataSource(Path("hwu64-train"), Path("hwu64-valid"), train, valid)
        classifiers = {}
        for mode, log in (("off", None), ("on", store)):
            classifier = Classifier(
                settings,
                ArtifactStore(work / "models", keep=2),
                factory,
                inference=inference,
                training=training,
            )
            await classifier.start(source, examples, [], "tfidf", discovery=log)
            classifiers[mode] = classifier
        for _ in range(KEEP_ROUNDS):
            for mode, classifier in classifiers.items():
                for i, text in enumerate(texts):
                    started = time.perf_counter()
                    await classifier.classify([text], forced, [f"s{i}"])
                    timings[mode].append((time.perf_counter() - started) * 1000)
        for classifier in classifiers.values():
            await classifier.stop()
        store.close()
        examples.close()
    off, on = float(np.median(timings["off"])), float(np.median(timings["on"]))
    return {
        "calls_per_mode": len(timings["off"]),
        "median_ms_off": round(off, 3),
        "median_ms_on": round(on, 3),
        "p99_ms_off": round(float(np.percentile(timings["off"], 99)), 3),
        "p99_ms_on": round(float(np.percentile(timings["on"], 99)), 3),
        "ratio": round(on / off, 2),
    }


def score(
    config: DiscoveryConfig, texts: list[str], truth: list[str], held: set[str]
) -> dict[str, Any]:
    factory = CachedEncoderFactory(threads=2, batch_size=64, max_tokens=128)
    started = time.perf_counter()
    found, labels = discover(texts, [""] * len(texts), config, factory)
    seconds = time.perf_counter() - started
    clustered = labels != NOISE
    # noise as singletons, so it neither helps nor forms one giant cluster
    singletons = np.where(clustered, labels, -(np.arange(len(labels)) + 2))
    majority_hits, recovered = 0, set()
    for cluster in set(labels[clustered].tolist()):
        members = [truth[i] for i in np.flatnonzero(labels == cluster)]
        intent, hits = Counter(members).most_common(1)[0]
        majority_hits += hits
        if intent in held:
            recovered.add(intent)
    return {
        "method": config.method,
        "features": config.features,
        "distance_threshold": config.distance_threshold if config.method != "hdbscan" else None,
        "clusters": len(found),
        "clustered": round(float(clustered.mean()), 3),
        "purity": round(majority_hits / max(int(clustered.sum()), 1), 3),
        "ari": round(float(adjusted_rand_score(truth, singletons)), 3),
        "recovered": f"{len(recovered)}/{len(held)}",
        "seconds": round(seconds, 2),
    }


def run() -> dict[str, Any]:
    train = load_jsonl(bundled_hwu64("train"))
    held = set(held_out_intents(train))
    configs = CONFIGS
    if os.environ.get("BENCH_DISCOVERY_EMBEDDINGS", "1") == "0":
        configs = [c for c in CONFIGS if c.features != "embeddings"]
    result: dict[str, Any] = {"held_out_intents": sorted(held)}
    with tempfile.TemporaryDirectory() as tmp:
        result["keep_cost"] = asyncio.run(keep_cost(Path(tmp)))
    if os.environ.get("BENCH_DISCOVERY_KEEP_ONLY") == "1":
        return result
    for traffic in TRAFFIC:
        with tempfile.TemporaryDirectory() as tmp:
            pairs = asyncio.run(kept_traffic(Path(tmp), held, traffic))
        texts, truth = [t for t, _ in pairs], [y for _, y in pairs]
        result[traffic] = {
            "kept_messages": len(texts),
            "kept_from_held_out": sum(1 for y in truth if y in held),
            "rows": [score(c, texts, truth, held) for c in configs],
        }
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
