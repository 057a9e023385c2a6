"""OrchestrationModule: wires settings, peers, composer, log and pipeline into the server.

With ``peers = "in_process"`` it also owns a ClassificationModule and a ContextModule:
the one server serves all three services, and the pipeline calls their servicers
directly (see :mod:`.in_process`).
"""

from __future__ import annotations

import asyncio

import grpc
import structlog

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_client.cli import requires_extra
from switchboard_server.config import ServiceName, Settings
from switchboard_server.errors import Unavailable
from switchboard_server.orchestration.breaker import (
    BreakerComposer,
    BreakerConfig,
    CircuitBreaker,
)
from switchboard_server.orchestration.composer import RuleComposer, default_registry
from switchboard_server.orchestration.domain import ChatPipeline, PipelineConfig
from switchboard_server.orchestration.llm import LLMComposer, LLMConfig
from switchboard_server.orchestration.metrics import BreakerMetrics, ChatMetrics
from switchboard_server.orchestration.peers import Peers
from switchboard_server.orchestration.ports import Classifier, Composer, ContextPort
from switchboard_server.orchestration.servicer import OrchestrationServicer
from switchboard_server.orchestration.settings import OrchestrationSettings
from switchboard_server.orchestration.store import LogStore, SqliteConversationLog
from switchboard_server.service import Runtime, ServiceModule

log = structlog.get_logger(__name__)

LOG_RETRY_MAX_S = 5.0
"""Longest wait between two attempts to open an unavailable conversation log."""

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestrationService"].full_name


def pipeline_config(s: OrchestrationSettings) -> PipelineConfig:
    return PipelineConfig(
        margin_s=s.deadline_margin_ms / 1000.0,
        classify_timeout_s=s.classify_timeout_ms / 1000.0,
        context_timeout_s=s.context_timeout_ms / 1000.0,
        memory_timeout_s=s.memory_timeout_ms / 1000.0,
        compose_reserve_s=s.compose_reserve_ms / 1000.0,
        commit_reserve_s=s.commit_reserve_ms / 1000.0,
        max_context_results=s.max_context_results,
        max_context_chars=s.max_context_chars,
        top_k=s.alternatives_offered,
        fallback_intent=s.fallback_intent,
    )


def llm_behind_breaker(
    llm: Composer, s: OrchestrationSettings, metrics: BreakerMetrics
) -> BreakerComposer:
    """The LLM composer behind its circuit breaker, whose state the metrics show."""
    metrics.register("llm")
    breaker = CircuitBreaker(
        "llm",
        BreakerConfig(s.llm_breaker_failures, s.llm_breaker_cooldown_ms / 1000.0),
        on_transition=metrics.on_transition,
    )
    return BreakerComposer(llm, breaker)


def conversation_log(settings: Settings) -> LogStore:
    """The conversation log the settings choose (no I/O until ``open``)."""
    s, retention_s = settings.orchestration, settings.core.request_retention_s
    if s.store == "redis":
        with requires_extra("redis"):  # redis-py is an extra, imported only when chosen
            from switchboard_server.orchestration.store.redis_log import RedisConversationLog
        return RedisConversationLog(
            s.redis_url.get_secret_value(),
            password=s.redis_password.get_secret_value(),
            prefix=s.redis_key_prefix,
            timeout_s=s.redis_timeout_s,
            retention_s=retention_s,
        )
    return SqliteConversationLog(
        settings.core.data_dir_for(ServiceName.ORCHESTRATION), retention_s=retention_s
    )


class OrchestrationModule:
    """The orchestration service: peers' channels and the conversation log are its resources."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        s = settings.orchestration
        self._peers: Peers | None = None
        self._in_process: tuple[ServiceModule, ...] = ()
        classifier: Classifier
        context: ContextPort
        if s.peers == "in_process":
            from switchboard_server.classification.module import ClassificationModule
            from switchboard_server.context.module import ContextModule
            from switchboard_server.orchestration.in_process import (
                in_process_classifier,
                in_process_context,
            )

            classification, context_module = ClassificationModule(runtime), ContextModule(runtime)
            self._in_process = (classification, context_module)
            classifier = in_process_classifier(classification.servicer)
            context = in_process_context(context_module.servicer)
        else:
            self._peers = Peers(
                s.classification_target,
                s.context_target,
                interceptors_for=runtime.client_interceptors,
                max_message_bytes=settings.core.max_message_bytes,
            )
            classifier, context = self._peers.classifier, self._peers.context
        self._log = conversation_log(settings)
        rules = RuleComposer(
            default_registry(s.fallback_intent),
            min_relevance=s.min_citation_relevance,
            alternatives=s.alternatives_offered,
        )
        self._llm: LLMComposer | None = None
        composer: Composer = rules
        if s.composer == "llm":
            self._llm = LLMComposer(
                LLMConfig(
                    base_url=s.llm_base_url,
                    model=s.llm_model,
                    api_key=s.llm_api_key.get_secret_value(),
                    timeout_s=s.llm_timeout_ms / 1000.0,
                    max_tokens=s.llm_max_tokens,
                    temperature=s.llm_temperature,
                )
            )
            composer = llm_behind_breaker(self._llm, s, BreakerMetrics(runtime.metrics))
        pipeline = ChatPipeline(
            classifier,
            context,
            composer,
            self._log,
            pipeline_config(s),
            fallback_composer=rules,
            tracer_provider=runtime.tracer_provider,
        )
        self._servicer = OrchestrationServicer(
            pipeline,
            self._log,
            ChatMetrics(runtime.metrics),
            max_text_bytes=settings.core.max_text_bytes,
            chunk_chars=s.reply_chunk_chars,
            default_page_size=s.conversation_page_size,
        )

    @property
    def service_names(self) -> tuple[str, ...]:
        return (SERVICE_NAME, *(n for m in self._in_process for n in m.service_names))

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_OrchestrationServiceServicer_to_server(self._servicer, server)
        for module in self._in_process:
            module.register(server)

    async def start(self) -> None:
        """Ready once the conversation log (and any in-process peer) is."""
        await asyncio.gather(self._open_log(), *(m.start() for m in self._in_process))
        if self._in_process:
            log.info("orchestration.in_process_peers", services=self.service_names[1:])

    async def _open_log(self) -> None:
        """Open the log, retrying while it is unavailable (its Redis not up yet): health
        stays NOT_SERVING until it opens."""
        delay = 0.1
        while True:
            try:
                await self._log.open()
                return
            except Unavailable:
                log.warning("orchestration.log_unavailable", retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LOG_RETRY_MAX_S)

    async def stop(self) -> None:
        for module in self._in_process:
            await module.stop()
        if self._peers is not None:
            await self._peers.close()
        if self._llm is not None:
            await self._llm.aclose()
        await self._log.close()
