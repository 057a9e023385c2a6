"""What the apps refuse reaches the caller intact through the edge, and never ejects.

Fake apps (tests/mesh/fakes.py) on the real server stack (interceptor, tolerant
deserializers, error bounds) behind the rendered sidecars and edge. The same answers
directly from the real services are in tests/integration/test_wire_robustness.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.context.v1 import context_service_pb2_grpc as ctx_grpc
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology
from tests.support.mesh_fakes import CLASSIFICATION, CONTEXT
from tests.support.mesh_harness import Mesh, running_mesh, sub_topology, wait_healthy
from tests.support.rich_status import error_details

pytestmark = pytest.mark.mesh

CLASSIFY = f"/{CLASSIFICATION}/Classify"
GET_CONTEXT = f"/{CONTEXT}/GetContext"
GARBAGE = b"\x0a\x05ab"  # field 1 announces 5 bytes; 2 follow
MAX_DETAILS = 8 * 1024
CALLERS_CODES = [
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
]
APPEND = ctx_pb.AppendMemoryRequest(
    session_id="s1", entries=[ctx_pb.MemoryEntry(type=ctx_pb.MEMORY_TYPE_WORKING, content="x")]
)


async def failed(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with (``call``: an awaitable call or stream read)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def trailers(exc: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    metadata: Any = exc.trailing_metadata() or ()
    return dict(metadata)


def big_headers(size: int) -> tuple[tuple[str, str], ...]:
    """Metadata of about ``size`` bytes, in values under grpc's per-field limits."""
    chunks = [min(8000, size - start) for start in range(0, size, 8000)]
    return tuple((f"x-filler-{i}", "a" * n) for i, n in enumerate(chunks))


async def largest_header_block_the_edge_forwards(stub: ctx_grpc.ContextServiceStub) -> int:
    """Bisect the metadata size where the edge stops forwarding (it resets beyond)."""
    low, high = 16 * 1024, 128 * 1024
    while high - low > 16:
        size = (low + high) // 2
        exc = await failed(stub.AppendMemory(APPEND, metadata=big_headers(size), timeout=10))
        if exc.code() == grpc.StatusCode.INTERNAL and "RST_STREAM" in (exc.details() or ""):
            high = size
        else:
            low = size
    return low


async def test_refusals_reach_the_caller_through_the_edge(
    topology: Topology, tmp_path: Path
) -> None:
    topo = sub_topology(topology, {"classification": 1, "context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        await wait_healthy(mesh, "context", 1)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            classify = cls_grpc.ClassificationServiceStub(channel)
            context = ctx_grpc.ContextServiceStub(channel)

            garbage = await failed(channel.unary_unary(CLASSIFY, None, None)(GARBAGE, timeout=10))
            stream = channel.stream_stream(f"/{CLASSIFICATION}/ClassifyStream", None, None)(
                iter(
                    [
                        cls_pb.ClassifyStreamRequest(
                            request_id="r0", text="hi"
                        ).SerializeToString(),
                        GARBAGE,
                    ]
                ),
                timeout=10,
            )
            first: Any = await stream.read()
            streamed = [cls_pb.ClassifyStreamResponse.FromString(first)]
            stream_error = await failed(stream.read())
            blanks = await failed(
                classify.ClassifyBatch(cls_pb.ClassifyBatchRequest(texts=[""] * 100), timeout=10)
            )
            mesh.modules["classification-0"].state.mode = "huge_error"
            huge = [
                await failed(classify.Classify(cls_pb.ClassifyRequest(text="x"), timeout=10))
                for _ in range(30)
            ]
            key_40kb = await failed(
                context.AppendMemory(APPEND, metadata=(("k" * 40_000, "v"),), timeout=10)
            )
            limit = await largest_header_block_the_edge_forwards(context)
            at_limit = await failed(
                context.AppendMemory(APPEND, metadata=big_headers(limit), timeout=10)
            )
            over_limit = await failed(
                context.AppendMemory(APPEND, metadata=big_headers(limit + 64), timeout=10)
            )

    for exc in (garbage, stream_error):
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(exc)[0].reason == "MALFORMED_REQUEST"
        assert trailers(exc).get("x-correlation-id")
    assert [r.request_id for r in streamed] == ["r0"]

    info, fields = error_details(blanks)
    assert blanks.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(fields) == 20
    assert info.metadata["field_violations"] == "100"

    assert {e.code() for e in huge} == {grpc.StatusCode.INVALID_ARGUMENT}
    for exc in huge:
        assert len(trailers(exc)["grpc-status-details-bin"]) <= MAX_DETAILS

    # Between the app's limit and the edge's, the app answers, through both Envoys
    # (the sidecar's ingress accepts a little more than the edge forwards).
    for exc in (key_40kb, at_limit):
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
        assert error_details(exc)[0].reason == "METADATA_TOO_LARGE"
    assert 56 * 1024 < limit <= mesh.settings.max_request_headers_kb * 1024
    # Over the edge's limit, the edge resets the stream: HTTP/2 has no status for it.
    assert over_limit.code() == grpc.StatusCode.INTERNAL


async def _burst(calls: Callable[[int], Awaitable[Any]], count: int) -> list[str]:
    """``count`` calls, 4 at a time; the codes."""
    codes: list[str] = []

    async def one(i: int) -> None:
        try:
            await calls(i)
            codes.append("OK")
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code().name)

    for start in range(0, count, 4):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 4))))
    return codes


async def _warm_up(mesh: Mesh, classify: Any, context: Any) -> None:
    """Until every replica has served a call (load balancers pick up a host that
    ``/clusters`` shows healthy up to one health-check interval later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    served = {"classification": "Classify", "context": "GetContext"}
    while not all(m.state.calls[served[name.split("-")[0]]] for name, m in mesh.modules.items()):
        assert loop.time() < deadline, {k: m.state.calls for k, m in mesh.modules.items()}
        await classify.Classify(cls_pb.ClassifyRequest(text="warm"), timeout=5)
        await context.GetContext(ctx_pb.GetContextRequest(query="q"), timeout=5)
        await asyncio.sleep(0.02)


async def _ejections(mesh: Mesh) -> dict[str, int]:
    stats = await mesh.edge_stats()
    return {
        cluster: stats.get(f"cluster.{cluster}.outlier_detection.ejections_enforced_total", 0)
        + sum(
            v
            for k, v in stats.items()
            if k.startswith(f"cluster.{cluster}.outlier_detection.ejections_detected_")
        )
        for cluster in ("classification", "context")
    }


async def test_a_callers_errors_never_eject_a_replica(topology: Topology, tmp_path: Path) -> None:
    """A burst of every kind of bad request leaves both replicas in; a burst of the
    replicas' own failures ejects one (so the detection is live)."""
    topo = sub_topology(topology, {"classification": 2, "context": 2})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 2)
        await wait_healthy(mesh, "context", 2)
        states = {name: module.state for name, module in mesh.modules.items()}
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            classify = cls_grpc.ClassificationServiceStub(channel)
            context = ctx_grpc.ContextServiceStub(channel)
            await _warm_up(mesh, classify, context)
            garbage_classify = channel.unary_unary(CLASSIFY, None, None)
            garbage_context = channel.unary_unary(GET_CONTEXT, None, None)
            codes = await _burst(lambda i: garbage_classify(GARBAGE, timeout=5), 16)
            codes += await _burst(lambda i: garbage_context(GARBAGE, timeout=5), 16)
            unknown = channel.unary_unary(f"/{CLASSIFICATION}/NoSuchMethod", None, None)
            codes += await _burst(lambda i: unknown(b"", timeout=5), 16)  # newer protos
            codes += await _burst(
                lambda i: classify.ClassifyBatch(
                    cls_pb.ClassifyBatchRequest(texts=[""] * 100), timeout=5
                ),
                12,
            )
            codes += await _burst(
                lambda i: context.AppendMemory(APPEND, metadata=(("k" * 40_000, "v"),), timeout=5),
                12,
            )
            limit = await largest_header_block_the_edge_forwards(context)
            codes += await _burst(
                lambda i: context.AppendMemory(APPEND, metadata=big_headers(limit), timeout=5),
                12,
            )
            for code in CALLERS_CODES:
                for state in states.values():
                    state.mode, state.code = "code", code
                codes += await _burst(
                    lambda i: classify.Classify(cls_pb.ClassifyRequest(text="x"), timeout=5), 12
                )
                codes += await _burst(lambda i: context.AppendMemory(APPEND, timeout=5), 12)
            after_callers = await _ejections(mesh)

            for state in states.values():
                state.mode = "ok"
            states["classification-0"].mode = "crash"  # INTERNAL: consecutive 5xx
            states["context-0"].mode = "unavailable"  # UNAVAILABLE: gateway failures
            await _burst(
                lambda i: classify.Classify(cls_pb.ClassifyRequest(text="x"), timeout=5), 16
            )
            await _burst(lambda i: context.AppendMemory(APPEND, timeout=5), 12)
            after_failures = await _ejections(mesh)

    assert "OK" not in codes
    assert {
        "INVALID_ARGUMENT",
        "RESOURCE_EXHAUSTED",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "UNIMPLEMENTED",
    } <= set(codes)
    assert after_callers == {"classification": 0, "context": 0}
    assert after_failures["classification"] >= 1
    assert after_failures["context"] >= 1


async def grpc_js(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results of ``calls`` made by a default @grpc/grpc-js client (one per repeat)."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(Path(__file__).with_name("grpc_js_client.js")),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(calls).encode()), 120)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_a_default_grpc_js_client_reads_every_refusal(
    topology: Topology, tmp_path: Path
) -> None:
    """The Node.js client of the issue, with no options, directly and through the edge."""
    topo = sub_topology(topology, {"classification": 1, "context": 1})
    async with running_mesh(topo, MeshSettings(), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        await wait_healthy(mesh, "context", 1)
        apps = {r.service: f"127.0.0.1:{r.app_port}" for r in mesh.plan.all_replicas()}
        blanks = cls_pb.ClassifyBatchRequest(texts=[""] * 100).SerializeToString().hex()
        one = cls_pb.ClassifyRequest(text="x").SerializeToString().hex()
        cases: list[tuple[dict[str, Any], int, str]] = []
        for classification, context in (
            (apps["classification"], apps["context"]),
            (mesh.edge, mesh.edge),
        ):
            cases += [
                (
                    {"target": classification, "path": CLASSIFY, "body_hex": GARBAGE.hex()},
                    grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    "MALFORMED_REQUEST",
                ),
                (
                    {
                        "target": classification,
                        "path": f"/{CLASSIFICATION}/ClassifyBatch",
                        "body_hex": blanks,
                    },
                    grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    "INVALID_ARGUMENT",
                ),
                (
                    {
                        "target": context,
                        "path": f"/{CONTEXT}/AppendMemory",
                        "body_hex": APPEND.SerializeToString().hex(),
                        "metadata": {"k" * 40_000: "v"},
                    },
                    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                    "METADATA_TOO_LARGE",
                ),
            ]
        first = await grpc_js([{**call, "repeat": 5} for call, _, _ in cases])
        mesh.modules["classification-0"].state.mode = "huge_error"
        targets = (apps["classification"], mesh.edge)
        huge = await grpc_js(
            [{"target": t, "path": CLASSIFY, "body_hex": one, "repeat": 20} for t in targets]
        )

    assert len(first) == 5 * len(cases)
    for result in first:
        _, code, reason = cases[result["index"]]
        assert (result["code"], result["correlation"]) == (code, True), result
        assert reason in result["status_details"]
        assert result["details_bin_bytes"] <= MAX_DETAILS
    assert len(huge) == 40
    assert {r["code"] for r in huge} == {grpc.StatusCode.INVALID_ARGUMENT.value[0]}
    assert max(r["details_bin_bytes"] for r in huge) <= MAX_DETAILS
    assert max(r["details_bytes"] for r in huge) <= 1024
