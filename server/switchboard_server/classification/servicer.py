"""gRPC servicer of switchboard.classification.v1.ClassificationService: translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.classification import translate
from switchboard_server.classification.answers import AnswerReporter
from switchboard_server.classification.domain import Classifier
from switchboard_server.config import Settings
from switchboard_server.request_keys import header_request_id, request_key
from switchboard_server.rollout_headers import envoy_request_id, is_shadow
from switchboard_server.validation import Violations


class ClassificationServicer(pb_grpc.ClassificationServiceServicer):
    """Validates requests, calls the classifier, builds responses."""

    def __init__(
        self, classifier: Classifier, settings: Settings, answers: AnswerReporter | None = None
    ) -> None:
        self._classifier = classifier
        self._settings = settings
        self._answers = answers  # to the rollout comparator, when variants run

    async def Classify(
        self,
        request: pb.ClassifyRequest,
        context: grpc.aio.ServicerContext[pb.ClassifyRequest, pb.ClassifyResponse],
    ) -> pb.ClassifyResponse:
        v = Violations()
        text, options = translate.classify_request(v, request, self._settings)
        v.raise_if_any()
        shadow = is_shadow(context)
        (verdict,) = await self._classifier.classify(
            [text], options, [request.session_id], shadow=shadow
        )
        if self._answers is not None:
            self._answers.report(envoy_request_id(context), verdict, shadow=shadow)
        return pb.ClassifyResponse(
            classification=translate.classification(verdict, options.include_debug)
        )

    async def ClassifyBatch(
        self,
        request: pb.ClassifyBatchRequest,
        context: grpc.aio.ServicerContext[pb.ClassifyBatchRequest, pb.ClassifyBatchResponse],
    ) -> pb.ClassifyBatchResponse:
        v = Violations()
        texts, options = translate.classify_batch_request(v, request, self._settings)
        v.raise_if_any()
        verdicts = await self._classifier.classify(texts, options)
        return pb.ClassifyBatchResponse(
            classifications=[translate.classification(x, options.include_debug) for x in verdicts]
        )

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[pb.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext[pb.ClassifyStreamRequest, pb.ClassifyStreamResponse],
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        async for request in request_iterator:
            v = Violations()
            request_id, text, options = translate.classify_stream_request(
                v, request, self._settings
            )
            v.raise_if_any()
            (verdict,) = await self._classifier.classify([text], options, [request.session_id])
            yield pb.ClassifyStreamResponse(
                request_id=request_id,
                classification=translate.classification(verdict, options.include_debug),
            )

    async def AddExamples(
        self,
        request: pb.AddExamplesRequest,
        context: grpc.aio.ServicerContext[pb.AddExamplesRequest, pb.AddExamplesResponse],
    ) -> pb.AddExamplesResponse:
        v = Violations()
        examples = translate.examples(v, request, self._settings)
        key = request_key(v, request, request.request_id, header_request_id(context))
        v.raise_if_any()
        added = await self._classifier.add_examples(examples, key=key)
        return translate.add_examples_response(added)

    async def ListIntents(
        self,
        request: pb.ListIntentsRequest,
        context: grpc.aio.ServicerContext[pb.ListIntentsRequest, pb.ListIntentsResponse],
    ) -> pb.ListIntentsResponse:
        return translate.list_intents_response(
            self._classifier.intents(), self._classifier.domains()
        )

    async def GetModelInfo(
        self,
        request: pb.GetModelInfoRequest,
        context: grpc.aio.ServicerContext[pb.GetModelInfoRequest, pb.GetModelInfoResponse],
    ) -> pb.GetModelInfoResponse:
        return translate.model_info_response(self._classifier.info())
