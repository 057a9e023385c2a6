"""Every service answers bad input with INVALID_ARGUMENT and a BadRequest naming the field.

One real server per service on port 0; the table below is the user's view of the
validation rules of issue #2 (blank or oversized text, malformed session ids,
unspecified or unknown enum values, negative or oversized limits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard.orchestration.v1 import orchestration_service_pb2_grpc as orch_grpc
from switchboard_server.config import ServiceName
from switchboard_server.testing import start_services
from tests.support.rich_status import violated_fields

LONG = "x" * 5000
BAD_SESSION = "not a session id!"


def raw_type(value: int) -> ctx_pb.MemoryType.ValueType:
    """A memory type by number, known or not (0 and unknown numbers must be rejected)."""
    return ctx_pb.MemoryType.ValueType(value)


Case = tuple[ServiceName, str, Callable[[grpc.aio.Channel], Any], Any, str]

CASES: list[Case] = [
    # classification
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text=""),
        "text",
    ),
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text=" \t\n"),
        "text",
    ),
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text=LONG),
        "text",
    ),
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text="hi", session_id=BAD_SESSION),
        "session_id",
    ),
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text="hi", options=cls_pb.ClassifyOptions(top_k=-1)),
        "options.top_k",
    ),
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text="hi", options=cls_pb.ClassifyOptions(top_k=1000)),
        "options.top_k",
    ),
    (
        ServiceName.CLASSIFICATION,
        "Classify",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyRequest(text="hi", options=cls_pb.ClassifyOptions(confidence_threshold=1.5)),
        "options.confidence_threshold",
    ),
    (
        ServiceName.CLASSIFICATION,
        "ClassifyBatch",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyBatchRequest(texts=[]),
        "texts",
    ),
    (
        ServiceName.CLASSIFICATION,
        "ClassifyBatch",
        cls_grpc.ClassificationServiceStub,
        cls_pb.ClassifyBatchRequest(texts=["ok", ""]),
        "texts[1]",
    ),
    (
        ServiceName.CLASSIFICATION,
        "AddExamples",
        cls_grpc.ClassificationServiceStub,
        cls_pb.AddExamplesRequest(examples=[cls_pb.Example(text="hi", intent="")]),
        "examples[0].intent",
    ),
    # context
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query=""),
        "query",
    ),
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query=LONG),
        "query",
    ),
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query="q", session_id=BAD_SESSION),
        "session_id",
    ),
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query="q", memory_types=[raw_type(0)]),
        "memory_types[0]",
    ),
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query="q", memory_types=[raw_type(1), raw_type(42)]),
        "memory_types[1]",
    ),
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query="q", max_results=-1),
        "max_results",
    ),
    (
        ServiceName.CONTEXT,
        "GetContext",
        ctx_grpc.ContextServiceStub,
        ctx_pb.GetContextRequest(query="q", max_results=10_000),
        "max_results",
    ),
    (
        ServiceName.CONTEXT,
        "AppendMemory",
        ctx_grpc.ContextServiceStub,
        ctx_pb.AppendMemoryRequest(session_id="s1", entries=[ctx_pb.MemoryEntry(content="x")]),
        "entries[0].type",
    ),
    (
        ServiceName.CONTEXT,
        "AppendMemory",
        ctx_grpc.ContextServiceStub,
        ctx_pb.AppendMemoryRequest(
            session_id="s1", entries=[ctx_pb.MemoryEntry(type=ctx_pb.MEMORY_TYPE_WORKING)]
        ),
        "entries[0].content",
    ),
    (
        ServiceName.CONTEXT,
        "AppendMemory",
        ctx_grpc.ContextServiceStub,
        ctx_pb.AppendMemoryRequest(
            session_id="", entries=[ctx_pb.MemoryEntry(type=raw_type(1), content="x")]
        ),
        "session_id",
    ),
    (
        ServiceName.CONTEXT,
        "ClearMemory",
        ctx_grpc.ContextServiceStub,
        ctx_pb.ClearMemoryRequest(session_id="s1", memory_types=[raw_type(7)]),
        "memory_types[0]",
    ),
    (
        ServiceName.CONTEXT,
        "IngestDocuments",
        ctx_grpc.ContextServiceStub,
        ctx_pb.IngestDocumentsRequest(documents=[]),
        "documents",
    ),
    (
        ServiceName.CONTEXT,
        "IngestDocuments",
        ctx_grpc.ContextServiceStub,
        ctx_pb.IngestDocumentsRequest(documents=[ctx_pb.Document(id="", text="body")]),
        "documents[0].id",
    ),
    # orchestration
    (
        ServiceName.ORCHESTRATION,
        "Chat",
        orch_grpc.OrchestrationServiceStub,
        orch_pb.ChatRequest(message="", session_id="s1"),
        "message",
    ),
    (
        ServiceName.ORCHESTRATION,
        "Chat",
        orch_grpc.OrchestrationServiceStub,
        orch_pb.ChatRequest(message=LONG, session_id="s1"),
        "message",
    ),
    (
        ServiceName.ORCHESTRATION,
        "Chat",
        orch_grpc.OrchestrationServiceStub,
        orch_pb.ChatRequest(message="hello", session_id=BAD_SESSION),
        "session_id",
    ),
    (
        ServiceName.ORCHESTRATION,
        "Chat",
        orch_grpc.OrchestrationServiceStub,
        orch_pb.ChatRequest(
            message="hello", session_id="s1", options=orch_pb.ChatOptions(max_context_results=-5)
        ),
        "options.max_context_results",
    ),
    (
        ServiceName.ORCHESTRATION,
        "GetConversation",
        orch_grpc.OrchestrationServiceStub,
        orch_pb.GetConversationRequest(session_id="s1", page_size=-1),
        "page_size",
    ),
    (
        ServiceName.ORCHESTRATION,
        "GetConversation",
        orch_grpc.OrchestrationServiceStub,
        orch_pb.GetConversationRequest(session_id="s1", page_token="garbage"),
        "page_token",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channels(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> AsyncIterator[dict[ServiceName, grpc.aio.Channel]]:
    data_dir = Path(tmp_path_factory.mktemp("bad-input"))
    async with start_services(data_dir, model_cache=model_cache) as running:
        yield {service: running.channel(service) for service in ServiceName}


@pytest.mark.parametrize(
    ("service", "method", "stub", "request_", "field"),
    CASES,
    ids=[f"{c[1]}-{c[4]}-{i}" for i, c in enumerate(CASES)],
)
@pytest.mark.asyncio(loop_scope="module")
async def test_bad_input_names_the_field(
    channels: dict[ServiceName, grpc.aio.Channel],
    service: ServiceName,
    method: str,
    stub: Callable[[grpc.aio.Channel], Any],
    request_: Any,
    field: str,
) -> None:
    call = getattr(stub(channels[service]), method)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert field in violated_fields(err.value)
