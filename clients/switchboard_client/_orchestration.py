"""OrchestrationClient: chat turns, streamed turns and conversation history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as pb_grpc
from switchboard_client._base import BaseClient, request_id_or_new


def _options(
    max_context_results: int, confidence_threshold: float | None, skip_memory: bool
) -> pb.ChatOptions:
    options = pb.ChatOptions(max_context_results=max_context_results, skip_memory=skip_memory)
    if confidence_threshold is not None:
        options.confidence_threshold = confidence_threshold
    return options


class OrchestrationClient(BaseClient):
    """Typed async client of ``switchboard.orchestration.v1.OrchestrationService``.

    ::

        async with OrchestrationClient(ConnectConfig("127.0.0.1:8080")) as client:
            response = await client.chat("wake me up at 7", session_id="s-1")
    """

    _stub: pb_grpc.OrchestrationServiceStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.OrchestrationServiceStub(channel)

    async def chat(
        self,
        message: str,
        *,
        session_id: str,
        max_context_results: int = 0,
        confidence_threshold: float | None = None,
        skip_memory: bool = False,
        timeout_s: float | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
    ) -> pb.ChatResponse:
        """Answer one message; raises a :class:`SwitchboardError` subclass on failure.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018 - make sure the stub exists
        request = pb.ChatRequest(
            message=message,
            session_id=session_id,
            options=_options(max_context_results, confidence_threshold, skip_memory),
            request_id=request_id_or_new(request_id),
        )
        return await self._unary(
            self._stub.Chat, request, **self._options(timeout_s, correlation_id, request.request_id)
        )

    async def chat_stream(
        self,
        message: str,
        *,
        session_id: str,
        max_context_results: int = 0,
        confidence_threshold: float | None = None,
        skip_memory: bool = False,
        timeout_s: float | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[pb.ChatStreamResponse]:
        """Stage events, reply chunks, then the summary; leaving the loop cancels the call.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018
        request = pb.ChatStreamRequest(
            message=message,
            session_id=session_id,
            options=_options(max_context_results, confidence_threshold, skip_memory),
            request_id=request_id_or_new(request_id),
        )
        event: pb.ChatStreamResponse
        async for event in self._stream(
            self._stub.ChatStream,
            request,
            **self._options(timeout_s, correlation_id, request.request_id),
        ):
            yield event

    async def get_conversation(
        self,
        session_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
        correlation_id: str | None = None,
    ) -> pb.GetConversationResponse:
        """One page of a session's turns, oldest first."""
        self.channel  # noqa: B018
        request = pb.GetConversationRequest(
            session_id=session_id, page_size=page_size, page_token=page_token
        )
        return await self._unary(
            self._stub.GetConversation, request, **self._options(timeout_s, correlation_id)
        )

    async def iter_conversation(
        self, session_id: str, *, page_size: int = 0, timeout_s: float | None = None
    ) -> AsyncIterator[pb.Turn]:
        """Every turn of a session, oldest first, fetching page after page."""
        token = ""
        while True:
            page = await self.get_conversation(
                session_id, page_size=page_size, page_token=token, timeout_s=timeout_s
            )
            for turn in page.turns:
                yield turn
            token = page.next_page_token
            if not token:
                return
