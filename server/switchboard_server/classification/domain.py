"""The classifier service in domain terms: classify, learn while serving, describe.

Serving state is one immutable :class:`Serving` snapshot (model + overlay) that is
replaced, never mutated, so inference threads read a consistent pair. CPU work runs
in executors: inference in a small pool, training in a single background thread.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

import structlog

from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.backends.base import EncoderFactory
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.lifecycle import load_or_train
from switchboard_server.classification.metrics import ClassificationMetrics
from switchboard_server.classification.model import TrainConfig, TrainedModel, artifact_key
from switchboard_server.classification.overlay import Overlay
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.sources import DataSource
from switchboard_server.classification.store.outofscope import OutOfScopeMessage
from switchboard_server.classification.taxonomy import OOS, IntentCount, intent_counts
from switchboard_server.classification.trainer import train_model
from switchboard_server.classification.verdict import Options, Verdict, decide
from switchboard_server.errors import ErrorReason, ResourceExhausted, Unavailable
from switchboard_server.idempotency import RequestKey

log = structlog.get_logger(__name__)


class ExampleLog(Protocol):
    """The durable run-time examples (blocking; called from a worker thread)."""

    def add(
        self, examples: Sequence[Example], key: RequestKey | None, outcome: Callable[[int], str]
    ) -> int:
        """Store ``examples``; record ``outcome(total)`` under ``key``; return the total."""
        ...

    def replay(self, key: RequestKey) -> str | None:
        """The outcome recorded under ``key``, if any."""
        ...


class OutOfScopeLog(Protocol):
    """Where out-of-scope messages are kept for discovery (blocking; a worker thread)."""

    def add(self, messages: Sequence[OutOfScopeMessage]) -> int:
        """Keep ``messages`` (hashing their session ids); return how many are kept."""
        ...


@dataclass(frozen=True)
class Serving:
    model: TrainedModel
    overlay: Overlay


@dataclass(frozen=True)
class AddResult:
    added: int
    total: int
    new_intents: tuple[str, ...]
    retrain_scheduled: bool


@dataclass(frozen=True)
class ModelInfo:
    version: str
    backend: str
    intent_count: int
    domain_count: int
    training_example_count: int
    runtime_example_count: int
    threshold: float
    trained_at: datetime
    artifact_key: str
    retraining: bool


@dataclass(frozen=True)
class DomainCount:
    name: str
    intent_count: int
    example_count: int


class Classifier:
    """Owns the serving model, the run-time examples and the background retrain."""

    def __init__(
        self,
        settings: ClassificationSettings,
        artifacts: ArtifactStore,
        encoder_factory: EncoderFactory,
        *,
        inference: Executor,
        training: Executor,
        metrics: ClassificationMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._source: DataSource | None = None
        self._examples: ExampleLog | None = None
        self.artifacts = artifacts
        self.encoder_factory = encoder_factory
        self.config = TrainConfig.from_settings(settings)
        self._inference = inference
        self._training = training
        self._metrics = metrics
        self._serving: Serving | None = None
        self._runtime: list[Example] = []
        self._lock = asyncio.Lock()  # serialises overlay/runtime changes and swaps
        self._retrain_requested = False
        self._retrain_task: asyncio.Task[None] | None = None
        self.retraining = False
        self._discovery: OutOfScopeLog | None = None

    # ---- life cycle -------------------------------------------------------------

    @property
    def source(self) -> DataSource:
        if self._source is None:
            raise Unavailable("the model is still loading", reason=ErrorReason.MODEL_NOT_READY)
        return self._source

    async def start(
        self,
        source: DataSource,
        examples: ExampleLog,
        runtime_examples: Sequence[Example],
        backend: str | None = None,
        discovery: OutOfScopeLog | None = None,
    ) -> None:
        """Load the cached model for base + run-time data, or train it (off the loop).

        With ``discovery``, every text answered out of scope is kept there."""
        loop = asyncio.get_running_loop()
        self._discovery = discovery
        self.config = TrainConfig.from_settings(self.settings, backend)
        self._source, self._examples = source, examples
        self._runtime = list(runtime_examples)
        model, complete = await loop.run_in_executor(self._training, self._load_or_train)
        overlay = await self._build_overlay(model, self._runtime)
        self._swap(Serving(model, overlay))
        if self._metrics is not None:
            self._metrics.allow_domains(i.path.split("/")[0] for i in self.intents())
            self._metrics.runtime_examples.set(len(self._runtime))
        if not complete:
            self._schedule_retrain()

    async def stop(self) -> None:
        task, self._retrain_task = self._retrain_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _load_or_train(self) -> tuple[TrainedModel, bool]:
        return load_or_train(
            self.config, self.source, self._runtime, self.artifacts, self.encoder_factory
        )

    # ---- classify -----------------------------------------------------------------

    @property
    def serving(self) -> Serving:
        if self._serving is None:
            raise Unavailable("the model is still loading", reason=ErrorReason.MODEL_NOT_READY)
        return self._serving

    async def classify(
        self,
        texts: Sequence[str],
        options: Options,
        sessions: Sequence[str] | None = None,
        *,
        shadow: bool = False,
    ) -> list[Verdict]:
        """Verdicts in order; ``sessions`` (one per text, "" for none) go with the texts
        answered out of scope to the discovery log, hashed there. A ``shadow`` request
        (a mirrored copy whose answer nobody sees) is counted apart and writes nothing."""
        serving = self.serving
        if serving.model.backend == "tfidf" and len(texts) <= self.settings.inline_max_texts:
            # Sub-millisecond: cheaper than a thread hop, which can wait on the GIL.
            verdicts = self._infer(serving, list(texts), options)
        else:
            verdicts = await asyncio.get_running_loop().run_in_executor(
                self._inference, self._infer, serving, list(texts), options
            )
        if self._metrics is not None:
            self._metrics.observe(verdicts, shadow=shadow)
        if self._discovery is not None and not shadow:
            await self._keep_out_of_scope(texts, sessions, verdicts)
        return verdicts

    async def _keep_out_of_scope(
        self, texts: Sequence[str], sessions: Sequence[str] | None, verdicts: Sequence[Verdict]
    ) -> None:
        assert self._discovery is not None
        ids = sessions if sessions is not None else [""] * len(texts)
        kept = [
            OutOfScopeMessage(
                text,
                session,
                v.confidence,
                v.alternatives[0][0] if v.alternatives else "",
                v.model_version,
            )
            for text, session, v in zip(texts, ids, verdicts, strict=True)
            if v.out_of_scope
        ]
        if not kept:
            return
        try:
            stored = await asyncio.get_running_loop().run_in_executor(
                None, self._discovery.add, kept
            )
        except Exception as exc:  # discovery is best effort: the answer still goes out
            log.warning("discovery.keep_failed", error=type(exc).__name__, count=len(kept))
            if self._metrics is not None:
                self._metrics.discovery_kept.labels("error").inc(len(kept))
            return
        if self._metrics is not None:
            self._metrics.discovery_kept.labels("ok").inc(len(kept))
            self._metrics.discovery_stored.set(stored)

    def _infer(self, serving: Serving, texts: list[str], options: Options) -> list[Verdict]:
        started = time.perf_counter()
        model = serving.model
        if len(serving.overlay):
            proba, features = model.scorer.analyse(texts)
            matches = serving.overlay.nearest(features)
        else:  # no run-time examples to compare with: the features are not needed
            proba, matches = model.scorer.proba(texts), [None] * len(texts)
        threshold = model.threshold if options.threshold is None else options.threshold
        elapsed_ms = (time.perf_counter() - started) * 1000 / max(len(texts), 1)
        verdicts = []
        for row, match in zip(proba, matches, strict=True):
            intent, confidence, hierarchy, alternatives, oos, decided = decide(
                row,
                model.hierarchy,
                threshold=threshold,
                top_k=options.top_k,
                match=match,
                overlay_min_similarity=self.settings.overlay_min_similarity,
            )
            verdicts.append(
                Verdict(
                    intent=intent,
                    confidence=confidence,
                    hierarchy=hierarchy,
                    alternatives=alternatives,
                    out_of_scope=oos,
                    model_version=model.version,
                    threshold=threshold,
                    overlay_match=decided,
                    overlay_similarity=match.similarity if match else 0.0,
                    inference_ms=elapsed_ms,
                    backend=model.backend,
                    display_name=model.display_name(intent),
                )
            )
        return verdicts

    # ---- learn while serving --------------------------------------------------------

    async def add_examples(
        self, examples: Sequence[Example], *, key: RequestKey | None = None
    ) -> AddResult:
        """Durable first, then effective through the overlay, then a retrain is scheduled.

        A repeat of ``key`` returns the first outcome and adds nothing (the lookup and
        the add run under the domain's lock, so concurrent duplicates add once)."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            store = self._examples
            assert store is not None
            if key is not None:
                prior = await loop.run_in_executor(None, store.replay, key)
                if prior is not None:
                    return _add_result_from_json(prior)
            serving = self.serving
            if len(self._runtime) + len(examples) > self.settings.max_runtime_examples:
                raise ResourceExhausted(
                    "the run-time example store is full",
                    reason=ErrorReason.RUNTIME_EXAMPLES_FULL,
                    metadata={"limit": str(self.settings.max_runtime_examples)},
                )
            known = self._known_intents()
            new = tuple(sorted({e.intent for e in examples if e.intent != OOS} - known))
            will_retrain = self.settings.retrain_enabled

            def outcome(total: int) -> str:
                return _add_result_to_json(AddResult(len(examples), total, new, will_retrain))

            total = await loop.run_in_executor(None, store.add, list(examples), key, outcome)
            features = await loop.run_in_executor(
                self._inference, serving.model.scorer.features, [e.text for e in examples]
            )
            self._runtime.extend(examples)
            self._swap(Serving(serving.model, serving.overlay.with_added(examples, features)))
        if self._metrics is not None:
            self._metrics.runtime_examples.set(total)
            self._metrics.allow_domains(e.intent.split("/")[0] for e in examples)
        scheduled = self._schedule_retrain()
        log.info("examples.added", count=len(examples), total=total, new_intents=len(new))
        return AddResult(len(examples), total, new, scheduled)

    def _known_intents(self) -> set[str]:
        return {e.intent for e in self.source.train} | {e.intent for e in self._runtime}

    def _schedule_retrain(self) -> bool:
        if not self.settings.retrain_enabled:
            return False
        self._retrain_requested = True
        if self._retrain_task is None or self._retrain_task.done():
            self._retrain_task = asyncio.get_running_loop().create_task(self._retrain_loop())
        return True

    async def _retrain_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._retrain_requested:
            await asyncio.sleep(self.settings.retrain_delay_s)
            self._retrain_requested = False
            snapshot = self.source.train + list(self._runtime)
            self.retraining = True
            try:
                model = await loop.run_in_executor(self._training, self._train_and_save, snapshot)
            except Exception as exc:
                log.error("model.retrain_failed", error=type(exc).__name__, exc_info=exc)
                if self._metrics is not None:
                    self._metrics.retrains.labels("error").inc()
                continue
            finally:
                self.retraining = False
            async with self._lock:
                overlay = await self._build_overlay(model, self._runtime)
                self._swap(Serving(model, overlay))
            if self._metrics is not None:
                self._metrics.retrains.labels("ok").inc()
            log.info("model.swapped", version=model.version)

    def _train_and_save(self, examples: list[Example]) -> TrainedModel:
        source = self.source
        key = artifact_key(self.config, examples, source.heldout, source.labels)
        cached = self.artifacts.load(key, self.encoder_factory)
        if cached is not None:
            return cached
        model = train_model(
            examples, source.heldout, self.config, self.encoder_factory, renamed=source.labels
        )
        self.artifacts.save(model)
        return model

    async def _build_overlay(self, model: TrainedModel, examples: list[Example]) -> Overlay:
        if not examples:
            return Overlay()
        snapshot = list(examples)
        features = await asyncio.get_running_loop().run_in_executor(
            self._inference, model.scorer.features, [e.text for e in snapshot]
        )
        return Overlay(snapshot, features)

    def _swap(self, serving: Serving) -> None:
        self._serving = serving
        if self._metrics is not None:
            self._metrics.serving(serving.model.version, serving.model.backend)

    # ---- describe -------------------------------------------------------------------

    def intents(self) -> list[IntentCount]:
        return intent_counts(
            (e.intent for e in self.source.train),
            (e.intent for e in self._runtime),
            self.source.labels,
        )

    def domains(self) -> list[DomainCount]:
        intents: Counter[str] = Counter()
        examples: Counter[str] = Counter()
        for item in self.intents():
            l1 = item.path.split("/")[0]
            intents[l1] += 1
            examples[l1] += item.example_count + item.runtime_example_count
        return [DomainCount(name, intents[name], examples[name]) for name in sorted(intents)]

    def info(self) -> ModelInfo:
        model = self.serving.model
        intents = self.intents()
        return ModelInfo(
            version=model.version,
            backend=model.backend,
            intent_count=len(intents),
            domain_count=len({i.path.split("/")[0] for i in intents}),
            training_example_count=model.training_example_count,
            runtime_example_count=len(self._runtime),
            threshold=model.threshold,
            trained_at=model.trained_at,
            artifact_key=model.artifact_key,
            retraining=self.retraining,
        )


def _add_result_to_json(result: AddResult) -> str:
    return json.dumps(asdict(result))


def _add_result_from_json(text: str) -> AddResult:
    data = json.loads(text)
    return AddResult(
        int(data["added"]),
        int(data["total"]),
        tuple(data["new_intents"]),
        bool(data["retrain_scheduled"]),
    )
