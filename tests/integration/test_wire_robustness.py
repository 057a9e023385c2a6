"""Every server answers what it cannot read with a status a default client can read.

The three real services on port 0, called directly (the same answers through the edge
are in tests/mesh/test_mesh_wire.py): bytes that are not the method's request message,
on every method of every service (health and reflection included), unary and
streaming; invalid UTF-8 in a string field; a ClassifyBatch of 100 blank texts; a
40 KB metadata key. Each answer is checked as a user sees it: the code, the ErrorInfo
reason, the correlation-id trailer, the size of the trailers, the RED metric and the
one access line, with no decoder text and no traceback anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pool
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard_server import errors
from switchboard_server.config import ServiceName
from switchboard_server.interceptors import ServerInterceptor
from switchboard_server.rpc_errors import code_for
from switchboard_server.testing import RunningServices, start_services
from tests.support.observability import LogCapture, captured_logs
from tests.support.rich_status import error_details

SERVICES = {
    ServiceName.CLASSIFICATION: "switchboard.classification.v1.ClassificationService",
    ServiceName.CONTEXT: "switchboard.context.v1.ContextService",
    ServiceName.ORCHESTRATION: "switchboard.orchestration.v1.OrchestrationService",
}
GARBAGE = {
    "corrupt": b"\xff\xff\xff",  # a tag whose varint never ends
    "truncated": b"\x0a\x05ab",  # field 1 announces 5 bytes; 2 follow
}
BAD_UTF8 = b"\x0a\x02\xff\xfe"  # field 1, a string here, holding bytes that are not UTF-8
DECODER_TEXT = ("DecodeError", "Error parsing", "Unexpected", "Traceback", "Wire format")
MAX_MESSAGE_SENT = 1024
MAX_DETAILS = 8 * 1024


def methods() -> list[tuple[ServiceName, str, bool, bool]]:
    """(server, '/pkg.Service/Method', client streaming, server streaming) of every
    method each server serves: its own service, health and reflection."""
    pool = descriptor_pool.Default()
    assert orch_pb.DESCRIPTOR  # every service's descriptors are in the pool
    found = []
    for server, name in SERVICES.items():
        for service in (name, health.SERVICE_NAME, reflection.SERVICE_NAME):
            for method in pool.FindServiceByName(service).methods:
                found.append(
                    (
                        server,
                        f"/{service}/{method.name}",
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return found


METHODS = methods()


async def call_raw(
    channel: grpc.aio.Channel,
    path: str,
    client_streaming: bool,
    server_streaming: bool,
    *body: bytes,
) -> tuple[list[bytes], grpc.aio.AioRpcError]:
    """Send raw message bytes; (the responses before the error, the error)."""
    responses: list[bytes] = []
    try:
        if client_streaming:
            call = channel.stream_stream(path, None, None)(iter(body), timeout=10)
            async for response in call:
                responses.append(response)
        elif server_streaming:
            async for response in channel.unary_stream(path, None, None)(body[0], timeout=10):
                responses.append(response)
        else:
            responses.append(await channel.unary_unary(path, None, None)(body[0], timeout=10))
    except grpc.aio.AioRpcError as exc:
        return responses, exc
    raise AssertionError(f"{path} answered {responses!r}")


def trailers(exc: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    metadata: Any = exc.trailing_metadata() or ()
    return dict(metadata)


def handled(running: RunningServices, server: ServiceName, path: str, code: str) -> float:
    """``grpc_server_handled_total`` of one method and code, whatever its grpc_type."""
    service, method = path.strip("/").split("/")
    total = 0.0
    for family in running.servers[server].observability.registry.collect():
        for sample in family.samples:
            if (
                sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_service") == service
                and sample.labels.get("grpc_method") == method
                and sample.labels.get("grpc_code") == code
            ):
                total += sample.value
    return total


async def handled_after(
    running: RunningServices, server: ServiceName, path: str, code: str, expected: float
) -> float:
    """:func:`handled`, once it reaches ``expected`` or after 2 s: the server counts a call
    after it has sent the status, which the client may see first."""
    deadline = asyncio.get_running_loop().time() + 2.0
    while (value := handled(running, server, path, code)) < expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    return value


async def logged_after(logs: LogCapture, path: str) -> None:
    """Until the server's access line of ``path`` is in ``logs``, or 2 s: like the
    counter, the line is written after the status is sent, which the client may see
    first (on a loaded machine, sometimes well before)."""
    method = path.rsplit("/", 1)[-1]
    deadline = asyncio.get_running_loop().time() + 2.0
    while not any(e["method"] == method for e in logs.access("server")):
        if asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.01)


def assert_refused(exc: grpc.aio.AioRpcError, code: grpc.StatusCode, reason: str) -> None:
    """The answer a client can act on: code, reason, correlation id, no decoder text."""
    assert exc.code() == code, exc.details()
    info, _ = error_details(exc)
    assert info.reason == reason
    assert trailers(exc).get("x-correlation-id")
    assert not any(text in (exc.details() or "") for text in DECODER_TEXT), exc.details()


def assert_one_warning_line(logs: LogCapture, path: str, reason: str) -> None:
    service, method = path.strip("/").split("/")
    lines = [e for e in logs.access("server") if e["method"] == method]
    assert [(e["level"], e["reason"], e["service"]) for e in lines] == [
        ("warning", reason, service)
    ]
    assert not any("exception" in e or e.get("level") == "error" for e in logs.lines())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> AsyncIterator[RunningServices]:
    data_dir = Path(tmp_path_factory.mktemp("wire"))
    async with start_services(data_dir, model_cache=model_cache) as services:
        yield services


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
@pytest.mark.parametrize(
    ("server", "path", "client_streaming", "server_streaming"),
    METHODS,
    ids=[f"{m[0].value}:{m[1].rsplit('.', 1)[-1]}" for m in METHODS],
)
@pytest.mark.asyncio(loop_scope="module")
async def test_an_undecodable_request_is_invalid_argument_on_every_method(
    running: RunningServices,
    server: ServiceName,
    path: str,
    client_streaming: bool,
    server_streaming: bool,
    garbage: str,
) -> None:
    before = handled(running, server, path, "INVALID_ARGUMENT")
    with captured_logs() as logs:
        _, exc = await call_raw(
            running.channel(server), path, client_streaming, server_streaming, GARBAGE[garbage]
        )
        counted = await handled_after(running, server, path, "INVALID_ARGUMENT", before + 1)
        await logged_after(logs, path)
    assert_refused(exc, grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert counted == before + 1
    assert_one_warning_line(logs, path, "MALFORMED_REQUEST")


@pytest.mark.parametrize(
    ("server", "path", "server_streaming"),
    [
        (ServiceName.CLASSIFICATION, f"/{SERVICES[ServiceName.CLASSIFICATION]}/Classify", False),
        (ServiceName.CONTEXT, f"/{SERVICES[ServiceName.CONTEXT]}/AppendMemory", False),
        (ServiceName.ORCHESTRATION, f"/{SERVICES[ServiceName.ORCHESTRATION]}/ChatStream", True),
    ],
)
@pytest.mark.asyncio(loop_scope="module")
async def test_invalid_utf8_in_a_string_field_is_malformed(
    running: RunningServices, server: ServiceName, path: str, server_streaming: bool
) -> None:
    _, exc = await call_raw(running.channel(server), path, False, server_streaming, BAD_UTF8)
    assert_refused(exc, grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")


@pytest.mark.asyncio(loop_scope="module")
async def test_a_request_stream_is_answered_until_the_undecodable_message(
    running: RunningServices,
) -> None:
    path = f"/{SERVICES[ServiceName.CLASSIFICATION]}/ClassifyStream"
    good = [
        cls_pb.ClassifyStreamRequest(request_id=f"r{i}", text="set an alarm").SerializeToString()
        for i in range(2)
    ]
    with captured_logs() as logs:
        responses, exc = await call_raw(
            running.channel(ServiceName.CLASSIFICATION), path, True, True, *good, BAD_UTF8
        )
    assert [cls_pb.ClassifyStreamResponse.FromString(r).request_id for r in responses] == [
        "r0",
        "r1",
    ]
    assert_refused(exc, grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert_one_warning_line(logs, path, "MALFORMED_REQUEST")


@pytest.mark.asyncio(loop_scope="module")
async def test_a_hundred_blank_texts_read_in_a_default_client(running: RunningServices) -> None:
    stub = cls_grpc.ClassificationServiceStub(running.channel(ServiceName.CLASSIFICATION))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ClassifyBatch(cls_pb.ClassifyBatchRequest(texts=[""] * 100), timeout=10)
    exc = err.value
    info, fields = error_details(exc)

    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == [f"texts[{i}]" for i in range(20)]
    assert (exc.details() or "").endswith("(and 80 more field violations)")
    assert info.metadata["field_violations"] == "100"
    assert len((exc.details() or "").encode()) <= MAX_MESSAGE_SENT
    assert len(trailers(exc)["grpc-status-details-bin"]) <= MAX_DETAILS


@pytest.mark.asyncio(loop_scope="module")
async def test_a_40kb_metadata_key_is_refused_with_a_status_that_says_so(
    running: RunningServices,
) -> None:
    path = f"/{SERVICES[ServiceName.CONTEXT]}/AppendMemory"
    stub = ctx_grpc.ContextServiceStub(running.channel(ServiceName.CONTEXT))
    request = ctx_pb.AppendMemoryRequest(
        session_id="s1", entries=[ctx_pb.MemoryEntry(type=ctx_pb.MEMORY_TYPE_WORKING, content="x")]
    )
    before = handled(running, ServiceName.CONTEXT, path, "RESOURCE_EXHAUSTED")
    with captured_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AppendMemory(request, metadata=(("k" * 40_000, "v"),), timeout=10)
    exc = err.value
    info, _ = error_details(exc)

    assert_refused(exc, grpc.StatusCode.RESOURCE_EXHAUSTED, "METADATA_TOO_LARGE")
    assert info.metadata["limit_bytes"] == str(running.settings.core.max_metadata_bytes)
    assert len(exc.details() or "") < 200
    counted = await handled_after(
        running, ServiceName.CONTEXT, path, "RESOURCE_EXHAUSTED", before + 1
    )
    assert counted == before + 1
    assert_one_warning_line(logs, path, "METADATA_TOO_LARGE")
    # under the limit is always read: grpc's own limit (8 KiB soft, 16 KiB hard, a
    # random refusal between them) no longer applies
    for i in range(20):
        reply = await stub.AppendMemory(
            ctx_pb.AppendMemoryRequest(session_id=f"s{i}", entries=request.entries),
            metadata=(("x-big", "v" * 15_000),),
            timeout=10,
        )
        assert len(reply.entry_ids) == 1


async def test_the_largest_error_answers_read_in_a_default_client() -> None:
    """Errors built to be as large as possible still arrive whole, every time."""
    worst = {
        b"violations": errors.InvalidArgument(
            [errors.FieldViolation("f" * 1000 + str(i), "d%" * 1000) for i in range(1000)]
        ),
        b"non-ascii": errors.InvalidArgument(
            [errors.FieldViolation("é" * 1000 + str(i), "☃" * 1000) for i in range(1000)]
        ),
        b"metadata": errors.Unavailable(
            "é%" * 10_000, metadata={f"k{i}" * 100: "v" * 10_000 for i in range(100)}
        ),
    }

    async def fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise worst[request]

    server = grpc.aio.server(interceptors=[ServerInterceptor()])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(fail)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for body, error in worst.items():
                codes = set()
                for _ in range(100):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await channel.unary_unary("/test.Errors/Fail", None, None)(body, timeout=10)
                    info, _ = error_details(err.value)  # the Status matches grpc-message
                    assert info.reason == error.reason.value
                    codes.add(err.value.code())
                assert codes == {code_for(error)}
                size = len(trailers(err.value)["grpc-status-details-bin"])
                assert size <= MAX_DETAILS
    finally:
        await server.stop(0)
