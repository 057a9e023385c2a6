"""ClassificationService servicer: validates and translates proto <-> domain, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.classification.classifier import Classifier
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.verdict import Options, Verdict
from switchboard_server.config import Settings
from switchboard_server.validation import Violations

BACKENDS = {
    "tfidf": pb.BACKEND_TFIDF,
    "embeddings": pb.BACKEND_EMBEDDINGS,
    "hybrid": pb.BACKEND_HYBRID,
}
MAX_TOP_K = 20


class ClassificationServicer(pb_grpc.ClassificationServiceServicer):
    def __init__(self, classifier: Classifier, settings: Settings) -> None:
        self._classifier = classifier
        self._settings = settings

    # ---- translation helpers ----------------------------------------------------------

    def _text(self, v: Violations, field: str, value: str) -> str:
        return v.text(field, value, max_bytes=self._settings.core.max_text_bytes)

    def _options(self, v: Violations, field: str, options: pb.ClassifyOptions) -> Options:
        threshold = None
        if options.HasField("confidence_threshold"):
            threshold = v.float_range(
                f"{field}.confidence_threshold", options.confidence_threshold, 0.0, 1.0
            )
        top_k = v.int_range(f"{field}.top_k", options.top_k, 0, MAX_TOP_K)
        return Options(
            threshold=threshold,
            top_k=top_k or self._settings.classification.default_top_k or 1,
            include_debug=options.include_debug,
        )

    @staticmethod
    def _classification(verdict: Verdict, debug: bool) -> pb.Classification:
        h = verdict.hierarchy
        message = pb.Classification(
            intent=verdict.intent,
            confidence=verdict.confidence,
            hierarchy=pb.IntentHierarchy(
                l1=h.l1,
                l1_confidence=h.l1_confidence,
                l2=h.l2,
                l2_confidence=h.l2_confidence,
                l3=h.l3,
                l3_confidence=h.l3_confidence,
            ),
            alternatives=[pb.Alternative(intent=i, confidence=c) for i, c in verdict.alternatives],
            out_of_scope=verdict.out_of_scope,
            model_version=verdict.model_version,
        )
        if debug:
            message.debug.CopyFrom(
                pb.ClassificationDebug(
                    backend=BACKENDS[verdict.backend],
                    confidence_threshold=verdict.threshold,
                    overlay_match=verdict.overlay_match,
                    overlay_similarity=verdict.overlay_similarity,
                    inference_ms=verdict.inference_ms,
                )
            )
        return message

    # ---- RPCs -----------------------------------------------------------------------

    async def Classify(
        self,
        request: pb.ClassifyRequest,
        context: grpc.aio.ServicerContext[pb.ClassifyRequest, pb.ClassifyResponse],
    ) -> pb.ClassifyResponse:
        v = Violations()
        text = self._text(v, "text", request.text)
        v.session_id("session_id", request.session_id, required=False)
        options = self._options(v, "options", request.options)
        v.raise_if_any()
        (verdict,) = await self._classifier.classify([text], options)
        return pb.ClassifyResponse(
            classification=self._classification(verdict, options.include_debug)
        )

    async def ClassifyBatch(
        self,
        request: pb.ClassifyBatchRequest,
        context: grpc.aio.ServicerContext[pb.ClassifyBatchRequest, pb.ClassifyBatchResponse],
    ) -> pb.ClassifyBatchResponse:
        v = Violations()
        v.count("texts", len(request.texts), 1, self._settings.core.max_batch_items)
        texts = [self._text(v, f"texts[{i}]", t) for i, t in enumerate(request.texts)]
        options = self._options(v, "options", request.options)
        v.raise_if_any()
        verdicts = await self._classifier.classify(texts, options)
        return pb.ClassifyBatchResponse(
            classifications=[self._classification(x, options.include_debug) for x in verdicts]
        )

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[pb.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext[pb.ClassifyStreamRequest, pb.ClassifyStreamResponse],
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        async for request in request_iterator:
            v = Violations()
            request_id = request.request_id
            if not request_id or len(request_id) > 128 or not request_id.isprintable():
                v.add("request_id", "must be 1-128 printable characters")
            text = self._text(v, "text", request.text)
            v.session_id("session_id", request.session_id, required=False)
            options = self._options(v, "options", request.options)
            v.raise_if_any()
            (verdict,) = await self._classifier.classify([text], options)
            yield pb.ClassifyStreamResponse(
                request_id=request_id,
                classification=self._classification(verdict, options.include_debug),
            )

    async def AddExamples(
        self,
        request: pb.AddExamplesRequest,
        context: grpc.aio.ServicerContext[pb.AddExamplesRequest, pb.AddExamplesResponse],
    ) -> pb.AddExamplesResponse:
        v = Violations()
        v.count("examples", len(request.examples), 1, self._settings.core.max_batch_items)
        examples = []
        for i, example in enumerate(request.examples):
            text = self._text(v, f"examples[{i}].text", example.text)
            intent = example.intent
            if intent != "oos":
                v.intent_path(f"examples[{i}].intent", intent)
            examples.append(Example(text, intent))
        v.raise_if_any()
        result = await self._classifier.add_examples(examples)
        return pb.AddExamplesResponse(
            added_count=result.added,
            runtime_example_count=result.total,
            new_intents=list(result.new_intents),
            retrain_scheduled=result.retrain_scheduled,
        )

    async def ListIntents(
        self,
        request: pb.ListIntentsRequest,
        context: grpc.aio.ServicerContext[pb.ListIntentsRequest, pb.ListIntentsResponse],
    ) -> pb.ListIntentsResponse:
        intents = []
        for item in self._classifier.intents():
            l1, _, rest = item.path.partition("/")
            l2, _, l3 = rest.partition("/")
            intents.append(
                pb.IntentInfo(
                    path=item.path,
                    l1=l1,
                    l2=l2,
                    l3=l3,
                    example_count=item.example_count,
                    runtime_example_count=item.runtime_example_count,
                )
            )
        domains = [
            pb.DomainInfo(name=d.name, intent_count=d.intent_count, example_count=d.example_count)
            for d in self._classifier.domains()
        ]
        return pb.ListIntentsResponse(intents=intents, domains=domains)

    async def GetModelInfo(
        self,
        request: pb.GetModelInfoRequest,
        context: grpc.aio.ServicerContext[pb.GetModelInfoRequest, pb.GetModelInfoResponse],
    ) -> pb.GetModelInfoResponse:
        info = self._classifier.info()
        trained_at = Timestamp()
        trained_at.FromDatetime(info.trained_at)
        return pb.GetModelInfoResponse(
            model_version=info.version,
            backend=BACKENDS[info.backend],
            intent_count=info.intent_count,
            domain_count=info.domain_count,
            training_example_count=info.training_example_count,
            runtime_example_count=info.runtime_example_count,
            default_confidence_threshold=info.threshold,
            trained_at=trained_at,
            artifact_key=info.artifact_key,
            retraining=info.retraining,
        )
