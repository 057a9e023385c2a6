"""The shared server: health, reflection, error details, correlation and graceful stop.

Real servers on port 0, real channels; the service behind them is the scripted
module in tests/support/scaffold_module.py so the scaffolding is tested on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.app import AppServer, create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
from tests.support.rich_status import error_details, trailing_metadata
from tests.support.scaffold_module import SERVICE, ScriptedModule

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def served(
    tmp_path: Path,
) -> AsyncIterator[tuple[AppServer, ScriptedModule, grpc.aio.Channel]]:
    settings = Settings(core=CoreSettings(data_dir=tmp_path, grace_period_s=2.0))
    module = ScriptedModule()
    server, port = await create_server(
        settings, ServiceName.CLASSIFICATION, "127.0.0.1:0", module=module
    )
    start = asyncio.create_task(server.start())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, module, channel
    finally:
        module.ready.set()
        await start
        await channel.close(None)
        await server.stop(0)


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def wait_for(channel: grpc.aio.Channel, service: str, status: int) -> None:
    for _ in range(100):
        if await health_of(channel, service) == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{service!r} never became {status}")


async def test_health_goes_not_serving_then_serving_then_not_serving_on_drain(served) -> None:
    server, module, channel = served
    await wait_for(channel, "", NOT_SERVING)
    assert await health_of(channel, SERVICE) == NOT_SERVING

    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
    )
    assert (await watch.read()).status == NOT_SERVING
    module.ready.set()
    assert (await watch.read()).status == SERVING
    assert await health_of(channel, "") == SERVING

    stop = asyncio.create_task(server.stop(1.0))
    assert (await watch.read()).status == NOT_SERVING
    watch.cancel()
    await stop
    assert module.stopped


async def test_health_follows_the_dependencies_a_module_reports(served) -> None:
    """A dependency down before ready keeps NOT_SERVING after start; its return turns
    SERVING; during a drain a dependency coming back does not turn SERVING again."""
    server, module, channel = served
    dependencies = server.runtime.dependencies
    await dependencies.report("store", False)
    module.ready.set()
    await asyncio.sleep(0.1)
    assert await health_of(channel, SERVICE) == NOT_SERVING
    await dependencies.report("store", True)
    assert await health_of(channel, SERVICE) == SERVING
    await dependencies.report("store", False)
    await dependencies.report("cache", False)
    await dependencies.report("store", True)
    assert await health_of(channel, "") == NOT_SERVING  # the cache is still down
    await dependencies.report("cache", True)
    assert await health_of(channel, "") == SERVING

    await dependencies.report("store", False)
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
    )
    assert (await watch.read()).status == NOT_SERVING
    stop = asyncio.create_task(server.stop(1.0))
    await asyncio.sleep(0.05)
    await dependencies.report("store", True)  # back during the drain: still NOT_SERVING
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(watch.read(), 0.3)
    watch.cancel()
    await stop


async def test_unknown_health_service_is_not_found(served) -> None:
    _, module, channel = served
    module.ready.set()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await health_of(channel, "no.such.Service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_service_health_and_reflection(served) -> None:
    _, module, channel = served
    module.ready.set()
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)

    replies = [reply async for reply in stub.ServerReflectionInfo(requests(), timeout=5)]
    names = {s.name for s in replies[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert replies[1].file_descriptor_response.file_descriptor_proto


async def test_bad_input_is_invalid_argument_naming_every_field(served) -> None:
    _, module, channel = served
    module.ready.set()
    stub = pb_grpc.ClassificationServiceStub(channel)
    request = pb.ClassifyRequest(
        text="   ", session_id="bad id!", options=pb.ClassifyOptions(top_k=-1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(request, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = error_details(err.value)
    assert info.reason == "INVALID_ARGUMENT"
    assert info.domain == "switchboard.dev"
    assert fields == ["text", "session_id", "options.top_k"]


async def test_oversized_text_names_the_field_and_the_limit(served) -> None:
    _, module, channel = served
    module.ready.set()
    stub = pb_grpc.ClassificationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(pb.ClassifyRequest(text="x" * 65), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the limit is 64" in (err.value.details() or "")
    assert error_details(err.value)[1] == ["text"]


async def test_domain_error_maps_to_code_and_reason(served) -> None:
    _, module, channel = served
    module.ready.set()
    stub = pb_grpc.ClassificationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(pb.ClassifyRequest(text="unavailable"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(err.value)[0].reason == "MODEL_NOT_READY"


async def test_crash_is_internal_without_leaking_and_server_keeps_serving(served) -> None:
    _, module, channel = served
    module.ready.set()
    stub = pb_grpc.ClassificationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(pb.ClassifyRequest(text="boom"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (err.value.details() or "")
    reply = await stub.Classify(pb.ClassifyRequest(text="hello"), timeout=5)
    assert reply.classification.intent == "test/echo"


async def test_correlation_id_is_echoed_or_generated(served) -> None:
    _, module, channel = served
    module.ready.set()
    stub = pb_grpc.ClassificationServiceStub(channel)
    call = stub.Classify(
        pb.ClassifyRequest(text="hi"), metadata=(("x-request-id", "req-42"),), timeout=5
    )
    await call
    assert dict(await call.trailing_metadata())["x-correlation-id"] == "req-42"

    call = stub.Classify(pb.ClassifyRequest(text="hi"), timeout=5)
    await call
    generated = dict(await call.trailing_metadata())["x-correlation-id"]
    assert len(generated) == 32

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(
            pb.ClassifyRequest(text=""), metadata=(("x-correlation-id", "c-7"),), timeout=5
        )
    assert trailing_metadata(err.value)["x-correlation-id"] == "c-7"


async def test_in_flight_call_completes_during_graceful_stop(served) -> None:
    server, module, channel = served
    module.ready.set()
    stub = pb_grpc.ClassificationServiceStub(channel)
    await wait_for(channel, "", SERVING)
    slow = asyncio.ensure_future(stub.Classify(pb.ClassifyRequest(text="sleep:0.5"), timeout=5))
    await asyncio.wait_for(module.servicer.call_started.wait(), 5)
    await server.stop(2.0)
    reply = await slow
    assert reply.classification.intent == "test/echo"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(pb.ClassifyRequest(text="late"), timeout=1)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
