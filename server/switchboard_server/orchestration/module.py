"""OrchestrationModule: wires settings, peers, composer, log and pipeline into the server."""

from __future__ import annotations

import grpc

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.config import ServiceName
from switchboard_server.orchestration.composer import RuleComposer, default_registry
from switchboard_server.orchestration.conversation_log import SqliteConversationLog
from switchboard_server.orchestration.llm import LLMComposer, LLMConfig
from switchboard_server.orchestration.metrics import ChatMetrics
from switchboard_server.orchestration.peers import Peers
from switchboard_server.orchestration.pipeline import ChatPipeline, PipelineConfig
from switchboard_server.orchestration.ports import Composer
from switchboard_server.orchestration.servicer import OrchestrationServicer
from switchboard_server.orchestration.settings import OrchestrationSettings
from switchboard_server.service import Runtime

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestrationService"].full_name


def pipeline_config(s: OrchestrationSettings) -> PipelineConfig:
    return PipelineConfig(
        margin_s=s.deadline_margin_ms / 1000.0,
        classify_timeout_s=s.classify_timeout_ms / 1000.0,
        context_timeout_s=s.context_timeout_ms / 1000.0,
        memory_timeout_s=s.memory_timeout_ms / 1000.0,
        max_context_results=s.max_context_results,
        max_context_chars=s.max_context_chars,
        top_k=s.alternatives_offered,
        fallback_intent=s.fallback_intent,
    )


class OrchestrationModule:
    """The orchestration service: peers' channels and the conversation log are its resources."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        s = settings.orchestration
        self._peers = Peers(
            s.classification_target,
            s.context_target,
            interceptors_for=runtime.client_interceptors,
            max_message_bytes=settings.core.max_message_bytes,
        )
        self._log = SqliteConversationLog(settings.core.data_dir_for(ServiceName.ORCHESTRATION))
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
                    api_key=s.llm_api_key,
                    timeout_s=s.llm_timeout_ms / 1000.0,
                    max_tokens=s.llm_max_tokens,
                    temperature=s.llm_temperature,
                )
            )
            composer = self._llm
        pipeline = ChatPipeline(
            self._peers.classifier,
            self._peers.context,
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
        return (SERVICE_NAME,)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_OrchestrationServiceServicer_to_server(self._servicer, server)  # type: ignore[no-untyped-call]

    async def start(self) -> None:
        await self._log.open()

    async def stop(self) -> None:
        await self._peers.close()
        if self._llm is not None:
            await self._llm.aclose()
        await self._log.close()
