"""ClassificationClient: classify texts, teach examples, read the taxonomy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_client._base import BaseClient, request_id_or_new


def _options(top_k: int, confidence_threshold: float | None) -> pb.ClassifyOptions:
    options = pb.ClassifyOptions(top_k=top_k)
    if confidence_threshold is not None:
        options.confidence_threshold = confidence_threshold
    return options


class ClassificationClient(BaseClient):
    """Typed async client of ``switchboard.classification.v1.ClassificationService``."""

    _stub: pb_grpc.ClassificationServiceStub

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.ClassificationServiceStub(channel)

    async def classify(
        self,
        text: str,
        *,
        session_id: str = "",
        top_k: int = 0,
        confidence_threshold: float | None = None,
        timeout_s: float | None = None,
    ) -> pb.Classification:
        """The verdict for one text."""
        self.channel  # noqa: B018
        request = pb.ClassifyRequest(
            text=text, session_id=session_id, options=_options(top_k, confidence_threshold)
        )
        response = await self._unary(self._stub.Classify, request, **self._options(timeout_s, None))
        return response.classification

    async def classify_batch(
        self,
        texts: Sequence[str],
        *,
        top_k: int = 0,
        confidence_threshold: float | None = None,
        timeout_s: float | None = None,
    ) -> list[pb.Classification]:
        """Verdicts for many texts, in order."""
        self.channel  # noqa: B018
        request = pb.ClassifyBatchRequest(
            texts=list(texts), options=_options(top_k, confidence_threshold)
        )
        response = await self._unary(
            self._stub.ClassifyBatch, request, **self._options(timeout_s, None)
        )
        return list(response.classifications)

    async def add_examples(
        self,
        examples: Iterable[tuple[str, str]],
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> pb.AddExamplesResponse:
        """Teach ``(text, intent)`` pairs; durable when this returns.

        ``request_id`` is the call's idempotency key (AIP-155): a fresh UUID when None.
        Pass the same value again to retry this call safely: the server answers a
        repeat with the first outcome and does not write twice.
        """
        self.channel  # noqa: B018
        request = pb.AddExamplesRequest(
            examples=[pb.Example(text=text, intent=intent) for text, intent in examples],
            request_id=request_id_or_new(request_id),
        )
        return await self._unary(
            self._stub.AddExamples, request, **self._options(timeout_s, None, request.request_id)
        )

    async def list_intents(self, *, timeout_s: float | None = None) -> pb.ListIntentsResponse:
        self.channel  # noqa: B018
        return await self._unary(
            self._stub.ListIntents, pb.ListIntentsRequest(), **self._options(timeout_s, None)
        )

    async def get_model_info(self, *, timeout_s: float | None = None) -> pb.GetModelInfoResponse:
        self.channel  # noqa: B018
        return await self._unary(
            self._stub.GetModelInfo, pb.GetModelInfoRequest(), **self._options(timeout_s, None)
        )
