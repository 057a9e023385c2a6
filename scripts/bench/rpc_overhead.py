"""Per-RPC framework cost: server CPU per unary call, bare grpc.aio vs our stack.

The server runs in its own process (``python -m scripts.bench.rpc_overhead serve MODE
PORT``) with a servicer that validates its request and answers at once, so the figure
is the framework and interceptor cost alone. Modes: ``bare`` (no interceptors),
``noop`` (one that only passes the call on), ``access`` (our interceptor without
metrics or spans: correlation, error mapping and access line), ``full`` (what
``create_server`` builds with tracing off: the same interceptor with RED metrics) and
``full-quiet`` (the same with access lines filtered out by level).
A client in this process sends CALLS calls, CONCURRENCY at a time.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from scripts.bench._proc import ROOT, cpu_seconds
from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard.classification.v1 import classification_service_pb2_grpc as pb_grpc
from switchboard_server.app import run_on_loop
from switchboard_server.config import load_settings
from switchboard_server.testing import free_port
from switchboard_server.validation import Violations

CALLS = 3000
WARMUP = 300
CONCURRENCY = 16
MODES = ("bare", "noop", "access", "full", "full-quiet")


async def _serve(mode: str, port: int) -> None:
    import tempfile

    from switchboard_server.app import create_server
    from switchboard_server.config import CoreSettings, ServiceName, Settings
    from switchboard_server.interceptors import ServerInterceptor
    from switchboard_server.observability.logging import configure_logging

    configure_logging("warning" if mode == "full-quiet" else "info", "json")
    address = f"127.0.0.1:{port}"
    if mode in ("bare", "noop", "access"):
        by_mode: dict[str, list[grpc.aio.ServerInterceptor[Any, Any]]] = {
            "bare": [],
            "noop": [_NoOp()],
            "access": [ServerInterceptor()],
        }
        interceptors = by_mode[mode]
        server = grpc.aio.server(interceptors=interceptors)
        servicer = _EchoServicer()  # type: ignore[abstract]  # serves Classify only
        pb_grpc.add_ClassificationServiceServicer_to_server(servicer, server)
        server.add_insecure_port(address)
        await server.start()
    else:
        module = _EchoModule()
        settings = Settings(core=CoreSettings(data_dir=Path(tempfile.mkdtemp())))
        app, _ = await create_server(settings, ServiceName.CLASSIFICATION, address, module=module)
        await app.start()
    print("ready", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


class _EchoServicer(pb_grpc.ClassificationServiceServicer):
    """Validates a Classify request as a real servicer would, then answers at once."""

    async def Classify(
        self,
        request: pb.ClassifyRequest,
        context: grpc.aio.ServicerContext[pb.ClassifyRequest, pb.ClassifyResponse],
    ) -> pb.ClassifyResponse:
        v = Violations()
        v.text("text", request.text, max_bytes=64)
        v.session_id("session_id", request.session_id, required=False)
        v.int_range("options.top_k", request.options.top_k, 0, 20)
        v.raise_if_any()
        return pb.ClassifyResponse(
            classification=pb.Classification(intent="test/echo", confidence=1.0)
        )


class _EchoModule:
    """The ServiceModule ``create_server`` gets in the ``full`` modes: ready at once."""

    service_names = ("switchboard.classification.v1.ClassificationService",)

    def register(self, server: grpc.aio.Server) -> None:
        servicer = _EchoServicer()  # type: ignore[abstract]  # serves Classify only
        pb_grpc.add_ClassificationServiceServicer_to_server(servicer, server)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class _NoOp(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """An interceptor that only passes the call on: the cost of having one at all."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        return await continuation(details)


async def _drive(port: int, pid: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        request = pb.ClassifyRequest(text="hello")
        for _ in range(WARMUP):
            await stub.Classify(request, timeout=5)
        pending = list(range(CALLS))

        async def worker() -> None:
            while pending:
                pending.pop()
                await stub.Classify(request, timeout=5)

        cpu, started = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    return {
        "calls_per_s": round(CALLS / elapsed),
        "server_cpu_ms_per_call": round(cpu / CALLS * 1000, 3),
    }


def run() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in MODES:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench.rpc_overhead", "serve", mode, str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None
            proc.stderr.readline()  # "ready"
            results[mode] = asyncio.run(_drive(port, proc.pid))
        finally:
            proc.terminate()
            proc.wait(10)
    bare = results["bare"]["server_cpu_ms_per_call"]
    results["full_over_bare"] = round(results["full"]["server_cpu_ms_per_call"] / bare, 2)
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        run_on_loop(_serve(sys.argv[2], int(sys.argv[3])), load_settings().core.event_loop)
    else:
        import json

        print(json.dumps(run(), indent=2))
