"""ClassificationModule: wires store, artifacts, classifier and servicer into the server."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import structlog

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.classification.answers import AnswerReporter
from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.backends.encoder import CachedEncoderFactory
from switchboard_server.classification.domain import Classifier
from switchboard_server.classification.metrics import ClassificationMetrics
from switchboard_server.classification.servicer import ClassificationServicer
from switchboard_server.classification.sources import load_source, resolve
from switchboard_server.classification.store import ExampleStore
from switchboard_server.classification.store.outofscope import OutOfScopeStore, open_discovery_store
from switchboard_server.config import ServiceName
from switchboard_server.service import Runtime

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ClassificationService"].full_name
STORE_FILE = "examples.sqlite3"


def encoder_factory_for(runtime: Runtime) -> CachedEncoderFactory:
    s = runtime.settings.classification
    return CachedEncoderFactory(
        threads=s.onnx_threads, batch_size=s.embedding_batch_size, max_tokens=s.embedding_max_tokens
    )


class ClassificationModule:
    """The classification service of one server process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings.classification
        self.data_dir = runtime.settings.core.data_dir_for(ServiceName.CLASSIFICATION)
        self.artifacts = ArtifactStore(self.data_dir, keep=settings.artifacts_kept)
        self._inference = ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="classify"
        )
        self._training = ThreadPoolExecutor(1, thread_name_prefix="classify-train")
        self.metrics = ClassificationMetrics(runtime.metrics, variant=settings.variant)
        self.classifier = Classifier(
            settings,
            self.artifacts,
            encoder_factory_for(runtime),
            inference=self._inference,
            training=self._training,
            metrics=self.metrics,
        )
        self.answers = (
            AnswerReporter(settings.comparator_address, settings.variant)
            if settings.comparator_address
            else None
        )
        self.servicer = ClassificationServicer(self.classifier, runtime.settings, self.answers)
        self._store: ExampleStore | None = None
        self._discovery: OutOfScopeStore | None = None

    @property
    def service_names(self) -> tuple[str, ...]:
        return (SERVICE_NAME,)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ClassificationServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        settings = self.runtime.settings.classification
        choice = await asyncio.to_thread(resolve, settings, self.artifacts)
        source = await asyncio.to_thread(
            load_source, choice.train_path, choice.heldout_path, choice.spec
        )
        self._store = await asyncio.to_thread(
            ExampleStore,
            self.data_dir / STORE_FILE,
            retention_s=self.runtime.settings.core.request_retention_s,
        )
        runtime_examples = await asyncio.to_thread(self._store.all)
        if settings.discovery_enabled:
            self._discovery = await asyncio.to_thread(self._open_discovery)
        await self.classifier.start(
            source, self._store, runtime_examples, choice.backend, discovery=self._discovery
        )
        log.info(
            "classification.ready",
            data=choice.origin,
            version=self.classifier.info().version,
            runtime_examples=len(runtime_examples),
        )

    def _open_discovery(self) -> OutOfScopeStore:
        return open_discovery_store(self.runtime.settings.classification, self.data_dir)

    async def stop(self) -> None:
        await self.classifier.stop()
        self._inference.shutdown(wait=True)
        if self.answers is not None:
            self.answers.close()
        self._training.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None
