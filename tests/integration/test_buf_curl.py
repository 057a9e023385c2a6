"""Operators can list and call every service with `buf curl`, by reflection alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from switchboard_server.app import create_server
from switchboard_server.config import CoreSettings, ServiceName, Settings
from switchboard_server.testing import start_services
from tests.support.scaffold_module import SERVICE, ScriptedModule

BUF = Path(__file__).parents[2] / "node_modules" / ".bin" / "buf"


async def buf_curl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    module = ScriptedModule()
    module.ready.set()
    settings = Settings(core=CoreSettings(data_dir=tmp_path))
    server, port = await create_server(
        settings, ServiceName.CLASSIFICATION, "127.0.0.1:0", module=module
    )
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def test_buf_curl_lists_methods_by_reflection(port: int) -> None:
    code, out, err = await buf_curl("--list-methods", f"http://127.0.0.1:{port}")
    assert code == 0, err
    methods = set(out.split())
    assert f"{SERVICE}/Classify" in methods
    assert f"{SERVICE}/ClassifyStream" in methods
    assert "grpc.health.v1.Health/Check" in methods


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
async def test_both_reflection_versions_list_and_describe(port: int, protocol: str) -> None:
    """grpcurl >= 1.9 and buf curl ask grpc.reflection.v1 first; older tools v1alpha."""
    base = f"http://127.0.0.1:{port}"
    code, out, err = await buf_curl("--reflect-protocol", protocol, "--list-services", base)
    assert code == 0, err
    assert set(out.split()) == {
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    # a call needs the method's schema: file_containing_symbol over that version
    url = f"{base}/{SERVICE}/Classify"
    code, out, err = await buf_curl("--reflect-protocol", protocol, "-d", '{"text": "hi"}', url)
    assert code == 0, err
    assert json.loads(out)["classification"]["intent"] == "test/echo"


async def test_buf_curl_calls_a_method_and_sees_errors(port: int) -> None:
    url = f"http://127.0.0.1:{port}/{SERVICE}/Classify"
    code, out, err = await buf_curl("-d", '{"text": "hello"}', url)
    assert code == 0, err
    assert json.loads(out)["classification"]["intent"] == "test/echo"

    code, out, err = await buf_curl("-d", '{"text": ""}', url)
    assert code != 0
    assert "invalid_argument" in err


REAL_CALLS: dict[ServiceName, tuple[str, str, dict[str, Any], Callable[[Any], bool]]] = {
    ServiceName.CLASSIFICATION: (
        "switchboard.classification.v1.ClassificationService",
        "Classify",
        {"text": "wake me up at 7 am tomorrow"},
        lambda reply: reply["classification"]["intent"].startswith("alarm/"),
    ),
    ServiceName.CONTEXT: (
        "switchboard.context.v1.ContextService",
        "GetContext",
        {"query": "how does switchboard retry failed calls?", "includeKnowledgeBase": True},
        lambda reply: reply["sources"][0]["kind"] == "SOURCE_KIND_KNOWLEDGE",
    ),
    ServiceName.ORCHESTRATION: (
        "switchboard.orchestration.v1.OrchestrationService",
        "Chat",
        {"message": "what is switchboard?", "sessionId": "buf-curl"},
        lambda reply: bool(reply["reply"]) and "correlationId" in reply,
    ),
}


async def test_buf_curl_lists_and_calls_every_real_service(
    tmp_path: Path, model_cache: Path
) -> None:
    async with start_services(tmp_path, model_cache=model_cache) as running:
        for service, (name, method, body, check) in REAL_CALLS.items():
            base = f"http://{running.target(service)}"
            code, out, err = await buf_curl("--list-methods", base)
            assert code == 0, err
            assert f"{name}/{method}" in out.split()
            code, out, err = await buf_curl("-d", json.dumps(body), f"{base}/{name}/{method}")
            assert code == 0, err
            assert check(json.loads(out)), out
