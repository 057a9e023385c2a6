"""OrchestrationService servicer: validates and translates, the pipeline does the work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_server.idempotency import RequestKey
from switchboard_server.orchestration.domain import ChatPipeline
from switchboard_server.orchestration.metrics import ChatMetrics
from switchboard_server.orchestration.paging import decode_page_token, encode_page_token
from switchboard_server.orchestration.ports import ConversationLog
from switchboard_server.orchestration.translate import (
    chunks,
    event_to_proto,
    result_to_proto,
    turn_to_proto,
)
from switchboard_server.orchestration.values import ChatOptions, ChatResult, StageEvent
from switchboard_server.request_keys import HasMetadata, header_request_id, request_key
from switchboard_server.validation import Violations

log = structlog.get_logger(__name__)

MAX_CONTEXT_RESULTS = 50
MAX_PAGE_SIZE = 100


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _correlation_id() -> str:
    return str(structlog.contextvars.get_contextvars().get("correlation_id", ""))


class OrchestrationServicer(pb_grpc.OrchestrationServiceServicer):
    """Chat, ChatStream and GetConversation."""

    def __init__(
        self,
        pipeline: ChatPipeline,
        conversation_log: ConversationLog,
        metrics: ChatMetrics,
        *,
        max_text_bytes: int,
        chunk_chars: int,
        default_page_size: int,
    ) -> None:
        self._pipeline = pipeline
        self._log = conversation_log
        self._metrics = metrics
        self._max_text_bytes = max_text_bytes
        self._chunk_chars = chunk_chars
        self._default_page_size = default_page_size

    def _parse(
        self, request: pb.ChatRequest | pb.ChatStreamRequest, context: HasMetadata
    ) -> tuple[str, str, ChatOptions, RequestKey | None]:
        v = Violations()
        message = v.text("message", request.message, max_bytes=self._max_text_bytes)
        session_id = v.session_id("session_id", request.session_id)
        o = request.options
        max_results = v.int_range(
            "options.max_context_results", o.max_context_results, 0, MAX_CONTEXT_RESULTS
        )
        threshold = None
        if o.HasField("confidence_threshold"):
            threshold = v.float_range(
                "options.confidence_threshold", o.confidence_threshold, 0.0, 1.0
            )
        key = request_key(v, request, request.request_id, header_request_id(context))
        v.raise_if_any()
        return message, session_id, ChatOptions(max_results, threshold, o.skip_memory), key

    async def Chat(
        self,
        request: pb.ChatRequest,
        context: grpc.aio.ServicerContext[pb.ChatRequest, pb.ChatResponse],
    ) -> pb.ChatResponse:
        message, session_id, options, key = self._parse(request, context)
        result = await self._pipeline.run(
            message,
            session_id,
            options,
            correlation_id=_correlation_id(),
            deadline=_deadline(context),
            key=key,
        )
        self._observe(result)
        return result_to_proto(result)

    async def ChatStream(
        self,
        request: pb.ChatStreamRequest,
        context: grpc.aio.ServicerContext[pb.ChatStreamRequest, pb.ChatStreamResponse],
    ) -> AsyncIterator[pb.ChatStreamResponse]:
        message, session_id, options, key = self._parse(request, context)
        events: asyncio.Queue[StageEvent | None] = asyncio.Queue()
        turn = asyncio.create_task(
            self._pipeline.run(
                message,
                session_id,
                options,
                correlation_id=_correlation_id(),
                deadline=_deadline(context),
                on_event=events.put_nowait,
                key=key,
            )
        )
        turn.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event_to_proto(event)
            result = await turn
            self._observe(result)
            for index, text in enumerate(chunks(result.reply, self._chunk_chars)):
                yield pb.ChatStreamResponse(reply_chunk=pb.ReplyChunk(index=index, text=text))
            yield pb.ChatStreamResponse(summary=result_to_proto(result))
        finally:
            if not turn.done():
                turn.cancel()
                log.info("chat_stream.cancelled")
                with contextlib.suppress(asyncio.CancelledError):
                    await turn

    async def GetConversation(
        self,
        request: pb.GetConversationRequest,
        context: grpc.aio.ServicerContext[pb.GetConversationRequest, pb.GetConversationResponse],
    ) -> pb.GetConversationResponse:
        v = Violations()
        session_id = v.session_id("session_id", request.session_id)
        size = v.int_range("page_size", request.page_size, 0, MAX_PAGE_SIZE)
        v.raise_if_any()
        start = decode_page_token(session_id, request.page_token)
        page = await self._log.page(session_id, start, size or self._default_page_size)
        return pb.GetConversationResponse(
            turns=[turn_to_proto(t) for t in page.turns],
            next_page_token=(
                "" if page.next_index is None else encode_page_token(session_id, page.next_index)
            ),
            total_turns=page.total,
        )

    def _observe(self, result: ChatResult) -> None:
        if not result.replayed:  # a replay is the same turn again, counted once
            self._metrics.observe(result)
        log.info(
            "chat.turn",
            intent=result.intent.intent,
            degraded=[d.dependency.name for d in result.degraded],
            total_ms=round(result.total_ms, 3),
            replayed=result.replayed,
        )
