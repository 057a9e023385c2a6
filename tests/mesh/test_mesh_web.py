"""Browsers at the edge of the real mesh: the chat page, gRPC-Web, CORS, and the page
driven end to end in headless Chromium.

One ``switchboard up --detach`` serves the module; ``https://chat.example.com`` is
configured as an extra allowed origin.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from playwright.async_api import Browser, ConsoleMessage, Route, async_playwright, expect

from switchboard.orchestration.v1 import orchestration_service_pb2 as orch_pb
from switchboard_server.mesh.envoy import counters
from tests.support.grpc_web import call
from tests.support.mesh_up import EXTRA_CORS_ORIGIN, ROOT, UpMesh

pytestmark = pytest.mark.mesh

SERVICE = "/switchboard.orchestration.v1.OrchestrationService"
EXTRA_ORIGIN = EXTRA_CORS_ORIGIN  # allowed by the shared mesh
REFUSED_ORIGIN = "https://evil.example.net"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def mesh(shared_mesh: UpMesh) -> UpMesh:
    return shared_mesh


@pytest.fixture
async def http(mesh: UpMesh) -> AsyncIterator[httpx.AsyncClient]:
    """A browser's client, with the development token the page sends."""
    async with httpx.AsyncClient(headers=mesh.headers) as client:
        yield client


def _taxonomy() -> set[str]:
    train = ROOT / "server/switchboard_server/classification/data/hwu64/train.jsonl"
    return {json.loads(line)["intent"] for line in train.read_text().splitlines()}


# -- the page ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/", "text/html; charset=utf-8", "<title>Switchboard chat</title>"),
        ("/app.js", "text/javascript; charset=utf-8", "ChatStream"),
        ("/grpc-web.js", "text/javascript; charset=utf-8", "grpc-status"),
        ("/style.css", "text/css; charset=utf-8", ".assistant"),
        ("/orchestration.json", "application/json", "ChatStreamResponse"),
        ("/vendor/protobuf.min.js", "text/javascript; charset=utf-8", "protobuf.js v8"),
    ],
)
async def test_the_edge_serves_the_page(
    mesh: UpMesh, http: httpx.AsyncClient, path: str, content_type: str, marker: str
) -> None:
    response = await http.get(f"{mesh.url}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert marker in response.text
    if path == "/":
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_status_lists_the_page(mesh: UpMesh) -> None:
    state = json.loads((mesh.data_dir / "mesh" / "state.json").read_text())
    edge = next(p for p in state["processes"] if p["name"] == "edge")
    assert edge["endpoints"]["web"] == f"{mesh.url}/"


# -- gRPC-Web ---------------------------------------------------------------------------


async def test_grpc_web_unary_chat(mesh: UpMesh, http: httpx.AsyncClient) -> None:
    request = orch_pb.ChatRequest(message="turn the volume up", session_id="web-unary")
    reply = await call(http, mesh.url, f"{SERVICE}/Chat", request, orch_pb.ChatResponse)
    assert reply.http_status == 200
    assert reply.headers["content-type"] == "application/grpc-web+proto"
    assert reply.code == grpc.StatusCode.OK, reply.details
    [chat] = reply.messages
    assert chat.reply
    assert chat.intent.intent == "audio/volume_up"
    assert list(chat.degraded) == []
    assert chat.correlation_id


async def test_grpc_web_chat_stream(mesh: UpMesh, http: httpx.AsyncClient) -> None:
    request = orch_pb.ChatStreamRequest(message="wake me up at 7 tomorrow", session_id="web-stream")
    reply = await call(http, mesh.url, f"{SERVICE}/ChatStream", request, orch_pb.ChatStreamResponse)
    assert reply.code == grpc.StatusCode.OK, reply.details
    kinds = [m.WhichOneof("event") for m in reply.messages]
    assert kinds[0] == "stage"
    assert kinds[-1] == "summary"
    assert kinds.count("summary") == 1
    assert "reply_chunk" in kinds
    summary = reply.messages[-1].summary
    chunks = [m.reply_chunk for m in reply.messages if m.WhichOneof("event") == "reply_chunk"]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert "".join(c.text for c in chunks) == summary.reply
    assert summary.intent.intent == "alarm/set"
    # the status came in the trailer frame, after the messages
    assert reply.trailers["grpc-status"] == "0"


async def test_grpc_web_errors_keep_their_status_and_details(
    mesh: UpMesh, http: httpx.AsyncClient
) -> None:
    request = orch_pb.ChatRequest(message="   ", session_id="web-error")
    reply = await call(http, mesh.url, f"{SERVICE}/Chat", request, orch_pb.ChatResponse)
    assert reply.http_status == 200
    assert reply.messages == []
    assert reply.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "message" in reply.details
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in reply.status.details)
    assert [v.field for v in bad.field_violations] == ["message"]
    assert reply.headers.get("x-correlation-id") or reply.trailers.get("x-correlation-id")


# -- CORS -------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,x-user-agent,grpc-timeout",
    }


@pytest.mark.parametrize("which", ["page", "configured"])
async def test_cors_preflight_from_an_allowed_origin(
    mesh: UpMesh, http: httpx.AsyncClient, which: str
) -> None:
    origin = mesh.url if which == "page" else EXTRA_ORIGIN
    response = await http.options(f"{mesh.url}{SERVICE}/ChatStream", headers=_preflight(origin))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"} <= allowed
    assert response.headers["access-control-max-age"] == "600"


async def test_cors_preflight_from_another_origin_is_refused_at_the_edge(
    mesh: UpMesh, http: httpx.AsyncClient
) -> None:
    before = await counters(http, mesh.edge_admin_port)
    response = await http.options(
        f"{mesh.url}{SERVICE}/ChatStream", headers=_preflight(REFUSED_ORIGIN)
    )
    after = await counters(http, mesh.edge_admin_port)
    # answered by the edge without Access-Control-Allow-Origin: the browser will not
    # send the call; the app never saw the preflight
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert (
        after["http.edge.cors.origin_invalid"] == before.get("http.edge.cors.origin_invalid", 0) + 1
    )
    assert after.get("cluster.orchestration.upstream_rq_total") == before.get(
        "cluster.orchestration.upstream_rq_total"
    )


@pytest.mark.parametrize(("origin", "allowed"), [(EXTRA_ORIGIN, True), (REFUSED_ORIGIN, False)])
async def test_cors_headers_on_a_grpc_web_call(
    mesh: UpMesh, http: httpx.AsyncClient, origin: str, allowed: bool
) -> None:
    request = orch_pb.ChatRequest(message="hello", session_id="web-cors")
    reply = await call(
        http, mesh.url, f"{SERVICE}/Chat", request, orch_pb.ChatResponse, headers={"origin": origin}
    )
    assert reply.code == grpc.StatusCode.OK, reply.details
    if allowed:
        assert reply.headers["access-control-allow-origin"] == origin
        exposed = {h.strip() for h in reply.headers["access-control-expose-headers"].split(",")}
        assert {
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "x-correlation-id",
        } <= exposed
    else:
        # the edge still answers (CORS is the browser's to enforce), but without the
        # headers that would let a page of that origin read the answer
        assert "access-control-allow-origin" not in reply.headers
        assert "access-control-expose-headers" not in reply.headers


# -- the page in a real browser ----------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_the_chat_page_in_headless_chromium(
    mesh: UpMesh, browser: Browser, tmp_path: Path
) -> None:
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    # as `switchboard up` prints it: the token in the fragment, which stays in the browser
    await page.goto(f"{mesh.url}/#token={mesh.token}")
    await expect(page.get_by_test_id("status")).to_have_text("ready", timeout=15_000)
    assert mesh.token not in page.url  # taken out of the address bar
    session = await page.get_by_test_id("session-id").text_content()
    assert (session or "").startswith("web-")

    turns = page.get_by_test_id("turn")
    await page.get_by_test_id("message-input").fill("wake me up at 7 tomorrow")
    await page.get_by_test_id("message-input").press("Enter")
    first = turns.nth(0)
    await expect(first).to_have_attribute("data-state", "done", timeout=30_000)
    intent = await first.get_by_test_id("intent-name").text_content()
    assert intent == "alarm/set"
    assert intent in _taxonomy()
    assert (await first.get_by_test_id("confidence").text_content() or "").endswith("%")
    # the reply arrived as stream events: reply chunks, each added to the page as it came
    assert int(await first.get_attribute("data-chunks") or 0) >= 1
    assert await first.get_by_test_id("reply").text_content()
    stages = (
        await first.get_by_test_id("timings")
        .locator("li")
        .evaluate_all("rows => rows.map(r => r.dataset.stage)")
    )
    assert {"classify", "retrieve", "compose"} <= set(stages)
    await expect(first.get_by_test_id("turn-index")).to_have_text("turn 1")

    await page.get_by_test_id("message-input").fill("actually make that alarm tomorrow at 8")
    await page.get_by_test_id("send").click()
    second = turns.nth(1)
    await expect(second).to_have_attribute("data-state", "done", timeout=30_000)
    await expect(second.get_by_test_id("turn-index")).to_have_text("turn 2")
    # the first message is in the second turn's context, from the session's memory
    memory = second.locator("[data-testid=source][data-kind=memory]")
    await expect(memory.filter(has_text="wake me up at 7 tomorrow").first).to_be_visible()

    await page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

    # the session survives a reload, and its turns are read back
    await page.reload()
    await expect(page.get_by_test_id("status")).to_have_text("ready", timeout=15_000)
    assert await page.get_by_test_id("session-id").text_content() == session
    await expect(page.get_by_test_id("user-message")).to_have_text(
        ["wake me up at 7 tomorrow", "actually make that alarm tomorrow at 8"]
    )
    assert problems == []


async def test_the_page_resends_a_message_with_its_request_id_and_gets_one_turn(
    mesh: UpMesh, browser: Browser
) -> None:
    """The first ChatStream reaches the mesh (which commits the turn) but its answer
    never reaches the page (the connection is cut); the page resends the same bytes,
    request_id included, and shows the committed turn: one turn, not two."""
    page = await browser.new_page()
    sent: list[bytes] = []

    async def cut_the_first_answer(route: Route) -> None:
        sent.append(route.request.post_data_buffer or b"")
        if len(sent) == 1:
            await route.fetch()  # the mesh answers; the page never sees it
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/ChatStream", cut_the_first_answer)
    await page.goto(f"{mesh.url}/#token={mesh.token}")
    await expect(page.get_by_test_id("status")).to_have_text("ready", timeout=15_000)
    await page.get_by_test_id("message-input").fill("set a timer for ten minutes")
    await page.get_by_test_id("message-input").press("Enter")
    turn = page.get_by_test_id("turn").nth(0)
    await expect(turn).to_have_attribute("data-state", "done", timeout=30_000)
    await expect(turn.get_by_test_id("turn-index")).to_have_text("turn 1")
    assert len(sent) == 2
    assert sent[0] == sent[1]
    request_id = await turn.get_attribute("data-request-id") or ""
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        request_id)  # fmt: skip
    assert request_id.encode() in sent[0]

    await page.unroute("**/ChatStream")
    await page.reload()
    await expect(page.get_by_test_id("status")).to_have_text("ready", timeout=15_000)
    await expect(page.get_by_test_id("user-message")).to_have_text(["set a timer for ten minutes"])
