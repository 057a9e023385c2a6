"""ContextModule: wires settings, store, cache, metrics and the servicer together."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import structlog

from switchboard.context.v1 import context_service_pb2_grpc as pb_grpc
from switchboard_client.cli import requires_extra
from switchboard_server.config import Settings
from switchboard_server.context.cache import ResultCache
from switchboard_server.context.domain import ContextService
from switchboard_server.context.hybrid import (
    EMBEDDINGS_MODULES,
    DenseIndex,
    HybridIndex,
    embeddings_installed,
)
from switchboard_server.context.metrics import ContextMetrics
from switchboard_server.context.seed import default_documents
from switchboard_server.context.servicer import ContextServicer
from switchboard_server.context.store.base import ContextStore
from switchboard_server.context.store.sqlite import SqliteStore
from switchboard_server.context.tantivy_index import TantivyIndex
from switchboard_server.context.values import MemoryType
from switchboard_server.errors import Unavailable
from switchboard_server.service import Runtime

log = structlog.get_logger(__name__)

SERVICE_NAME = "switchboard.context.v1.ContextService"
STORE_DEPENDENCY = "store"


def memory_caps(settings: Settings) -> dict[MemoryType, int]:
    ctx = settings.context
    return {
        MemoryType.WORKING: ctx.working_cap,
        MemoryType.EPISODIC: ctx.episodic_cap,
        MemoryType.SEMANTIC: ctx.semantic_cap,
    }


def build_store(settings: Settings) -> ContextStore:
    """The backend chosen by ``settings.context.store`` (no I/O until ``open``)."""
    from switchboard_server.config import ServiceName

    ctx = settings.context
    caps = memory_caps(settings)
    if ctx.store == "redis":
        with requires_extra("redis"):  # redis-py is an extra, imported only when chosen
            from switchboard_server.context.store.redis import RedisStore
        return RedisStore(
            ctx.redis_url.get_secret_value(),
            caps,
            prefix=ctx.redis_key_prefix,
            timeout_s=ctx.redis_timeout_s,
            retention_s=settings.core.request_retention_s,
            password=ctx.redis_password.get_secret_value(),
        )
    path = settings.core.data_dir_for(ServiceName.CONTEXT) / ctx.sqlite_filename
    return SqliteStore(
        path,
        caps,
        synchronous=ctx.sqlite_synchronous,
        readers=ctx.sqlite_readers,
        memory_entries=ctx.sqlite_memory_mirror_entries,
        retention_s=settings.core.request_retention_s,
    )


def index_dir(settings: Settings) -> Path:
    """This replica's knowledge index directory (``SWITCHBOARD_CONTEXT_INDEX_DIR``)."""
    from switchboard_server.config import ServiceName

    ctx = settings.context
    if ctx.index_dir:
        return Path(ctx.index_dir)
    base = settings.core.data_dir_for(ServiceName.CONTEXT)
    if ctx.store == "redis":  # replicas may share a data directory, not an index
        return base / f"index-{settings.core.port_for(ServiceName.CONTEXT)}"
    return base / "index"


def build_index(settings: Settings, store: ContextStore) -> TantivyIndex:
    """The lexical knowledge index fed from ``store``'s document log (no I/O until ``open``)."""
    ctx = settings.context
    return TantivyIndex(
        index_dir(settings),
        store,
        heap_bytes=ctx.index_heap_mb * 1_000_000,
        writer_threads=ctx.index_writer_threads,
        batch_documents=ctx.index_batch_documents,
    )


def build_knowledge(settings: Settings, store: ContextStore) -> TantivyIndex | HybridIndex:
    """What the service ranks knowledge with: :func:`build_index`, fused with dense vectors
    when hybrid ranking is on (:func:`hybrid_enabled`)."""
    ctx = settings.context
    lexical = build_index(settings, store)
    if not hybrid_enabled(settings):
        return lexical
    # the encoder's modules (numpy, scipy) only when hybrid ranking is on
    from switchboard_server.classification.backends.encoder import CachedEncoderFactory

    cls = settings.classification
    encoder = CachedEncoderFactory(
        threads=cls.onnx_threads,
        batch_size=cls.embedding_batch_size,
        max_tokens=cls.embedding_max_tokens,
    )
    dense = DenseIndex(store, encoder, batch_documents=ctx.index_batch_documents)
    return HybridIndex(
        lexical,
        dense,
        rrf_k=ctx.hybrid_rrf_k,
        depth=ctx.hybrid_depth,
        budget_s=ctx.hybrid_budget_ms / 1000,
    )


def hybrid_enabled(settings: Settings) -> bool:
    """``hybrid`` auto: whether the embeddings extra is installed; on: it must be."""
    mode = settings.context.hybrid
    if mode == "on" and not embeddings_installed():
        with requires_extra("embeddings"):
            for module in EMBEDDINGS_MODULES:
                __import__(module)
    return mode == "on" or (mode == "auto" and embeddings_installed())


class ContextModule:
    """The context service as a ServiceModule."""

    def __init__(self, runtime: Runtime, store: ContextStore | None = None) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._store = store or build_store(runtime.settings)
        self._index = build_knowledge(runtime.settings, self._store)
        self._metrics = ContextMetrics(runtime.metrics)
        self._servicer = ContextServicer(runtime.settings)
        self._store_check: asyncio.Task[None] | None = None
        self._tail: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None
        self.service: ContextService | None = None

    @property
    def service_names(self) -> tuple[str, ...]:
        return (SERVICE_NAME,)

    @property
    def servicer(self) -> ContextServicer:
        """The servicer, for in-process callers (``SWITCHBOARD_ORCHESTRATION_PEERS``)."""
        return self._servicer

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ContextServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        """Open the store and seed the knowledge base, retrying while the store is
        unavailable (Redis not up yet): health stays NOT_SERVING until both are done."""
        ctx = self._settings.context
        service = ContextService(
            self._store,
            self._index,
            ResultCache(ctx.cache_ttl_s, ctx.cache_max_entries),
            self._metrics,
            caps=memory_caps(self._settings),
            passage_max_chars=ctx.passage_max_chars,
            index_path=index_dir(self._settings),
        )
        opened, indexed, delay = False, False, 0.1
        while True:
            try:
                if not opened:
                    await self._store.open()
                    opened = True
                if not indexed:
                    await self._index.open()
                    indexed = True
                if ctx.seed_default_knowledge:
                    seeded = await service.seed(default_documents())
                    log.info("knowledge.seed", ingested=seeded)
                break
            except Unavailable:
                log.warning("context.store_unavailable", store=ctx.store, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.service = service
        self._servicer.attach(service)
        self._store_check = asyncio.create_task(self._check_store(), name="context.store_check")
        self._tail = asyncio.create_task(self._tail_log(), name="context.index_tail")
        # not before SERVING: counting the knowledge base is for metrics, not for answers
        self._gauges = asyncio.create_task(self._count_knowledge(), name="context.gauges")
        log.info("context.ready", store=ctx.store)

    async def _count_knowledge(self) -> None:
        if self.service is None:
            return
        # unavailable: the store check reports it; the next ingest or delete sets them
        with contextlib.suppress(Unavailable):
            await self.service.refresh_knowledge_gauges()

    async def _check_store(self) -> None:
        """Ping the store every interval and report it to the server's health: a replica
        whose store is unreachable answers NOT_SERVING, so the mesh routes around it."""
        ctx = self._settings.context
        reachable = True
        while True:
            await asyncio.sleep(ctx.store_check_interval_s)
            try:
                await asyncio.wait_for(self._store.ping(), ctx.store_check_timeout_s)
                now = True
            except (Unavailable, TimeoutError):
                now = False
            except Exception:  # a check must never stop checking
                log.exception("context.store_check_failed", store=ctx.store)
                now = False
            if now != reachable:
                report = log.info if now else log.warning
                report("context.store_reachable", store=ctx.store, reachable=now)
                reachable = now
            await self._runtime.dependencies.report(STORE_DEPENDENCY, now)

    async def _tail_log(self) -> None:
        """Catch the index up with the document log every interval: writes through the
        other replicas become searchable here within one interval and a commit."""
        interval = self._settings.context.index_poll_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._index.catch_up()
            except Unavailable:
                pass  # the store check reports it; the next round tries again
            except Exception:  # tailing must never stop
                log.exception("knowledge.index_tail_failed")

    async def stop(self) -> None:
        for task in (self._store_check, self._tail, self._gauges):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._store_check = self._tail = self._gauges = None
        self._servicer.attach(None)
        self.service = None
        await self._index.close()
        await self._store.close()
