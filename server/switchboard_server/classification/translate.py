"""Proto <-> domain translation with validation (used by the servicer only)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.domain import AddResult, DomainCount, ModelInfo
from switchboard_server.classification.taxonomy import IntentCount
from switchboard_server.classification.verdict import Options, Verdict
from switchboard_server.config import Settings
from switchboard_server.validation import Violations

BACKENDS = {
    "tfidf": pb.BACKEND_TFIDF,
    "embeddings": pb.BACKEND_EMBEDDINGS,
    "hybrid": pb.BACKEND_HYBRID,
}
MAX_TOP_K = 20
MAX_REQUEST_ID = 128


def text(v: Violations, field: str, value: str, settings: Settings) -> str:
    """A text to classify (or to learn from), bounded by ``core.max_text_bytes``."""
    return v.text(field, value, max_bytes=settings.core.max_text_bytes)


def options(v: Violations, field: str, message: pb.ClassifyOptions, settings: Settings) -> Options:
    """ClassifyOptions as domain Options with the server's defaults applied."""
    threshold = None
    if message.HasField("confidence_threshold"):
        threshold = v.float_range(
            f"{field}.confidence_threshold", message.confidence_threshold, 0.0, 1.0
        )
    top_k = v.int_range(f"{field}.top_k", message.top_k, 0, MAX_TOP_K)
    return Options(
        threshold=threshold,
        top_k=top_k or settings.classification.default_top_k or 1,
        include_debug=message.include_debug,
    )


def classify_request(
    v: Violations, request: pb.ClassifyRequest, settings: Settings
) -> tuple[str, Options]:
    """The text and options of a ClassifyRequest."""
    value = text(v, "text", request.text, settings)
    v.session_id("session_id", request.session_id, required=False)
    return value, options(v, "options", request.options, settings)


def classify_batch_request(
    v: Violations, request: pb.ClassifyBatchRequest, settings: Settings
) -> tuple[list[str], Options]:
    """The texts and options of a ClassifyBatchRequest."""
    v.count("texts", len(request.texts), 1, settings.core.max_batch_items)
    texts = [text(v, f"texts[{i}]", t, settings) for i, t in enumerate(request.texts)]
    return texts, options(v, "options", request.options, settings)


def classify_stream_request(
    v: Violations, request: pb.ClassifyStreamRequest, settings: Settings
) -> tuple[str, str, Options]:
    """The request id, text and options of one ClassifyStreamRequest."""
    request_id = request.request_id
    if not request_id or len(request_id) > MAX_REQUEST_ID or not request_id.isprintable():
        v.add("request_id", f"must be 1-{MAX_REQUEST_ID} printable characters")
    value = text(v, "text", request.text, settings)
    v.session_id("session_id", request.session_id, required=False)
    return request_id, value, options(v, "options", request.options, settings)


def examples(v: Violations, request: pb.AddExamplesRequest, settings: Settings) -> list[Example]:
    """The labelled examples of an AddExamplesRequest (``oos`` is a valid label)."""
    v.count("examples", len(request.examples), 1, settings.core.max_batch_items)
    result = []
    for i, example in enumerate(request.examples):
        value = text(v, f"examples[{i}].text", example.text, settings)
        intent = example.intent
        if intent != "oos":
            v.intent_path(f"examples[{i}].intent", intent)
        result.append(Example(value, intent))
    return result


def classification(verdict: Verdict, debug: bool) -> pb.Classification:
    """A Verdict as a Classification, with its debug block when asked for."""
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
        display_name=verdict.display_name,
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


def add_examples_response(result: AddResult) -> pb.AddExamplesResponse:
    return pb.AddExamplesResponse(
        added_count=result.added,
        runtime_example_count=result.total,
        new_intents=list(result.new_intents),
        retrain_scheduled=result.retrain_scheduled,
    )


def list_intents_response(
    intents: Sequence[IntentCount], domains: Sequence[DomainCount]
) -> pb.ListIntentsResponse:
    """Intents with their path split into levels, and per-domain counts."""
    infos = []
    for item in intents:
        l1, _, rest = item.path.partition("/")
        l2, _, l3 = rest.partition("/")
        infos.append(
            pb.IntentInfo(
                path=item.path,
                l1=l1,
                l2=l2,
                l3=l3,
                example_count=item.example_count,
                runtime_example_count=item.runtime_example_count,
                display_name=item.display_name,
            )
        )
    return pb.ListIntentsResponse(
        intents=infos,
        domains=[
            pb.DomainInfo(name=d.name, intent_count=d.intent_count, example_count=d.example_count)
            for d in domains
        ],
    )


def model_info_response(info: ModelInfo) -> pb.GetModelInfoResponse:
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
