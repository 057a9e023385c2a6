"""The REST/JSON front door: every route through the edge of the real services, with httpx.

JSON in, JSON out; errors are a JSON google.rpc.Status with the HTTP status of the code.
The real services run under `switchboard up --detach` on free ports (one mesh for the
module). The last tests use in-process fake apps behind real Envoy for the upstream
failures a healthy mesh cannot show, and read the rendered configs.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.protobuf import descriptor_pb2

from switchboard_server.mesh.edge.rest import TRANSCODER, descriptor_set_path
from switchboard_server.mesh.render import render_edge, render_sidecar
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Topology, make_plan
from tests.support.mesh_harness import running_mesh, sub_topology, wait_healthy
from tests.support.mesh_up import UpMesh

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).parents[2]
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@pytest.fixture(scope="module")
def rest(shared_mesh: UpMesh) -> Iterator[httpx.Client]:
    headers = shared_mesh.headers
    with httpx.Client(base_url=shared_mesh.url, timeout=30, headers=headers) as client:
        yield client


def _session() -> str:
    return f"rest-{uuid.uuid4().hex[:12]}"


def _status(response: httpx.Response, http_status: int, code: int) -> dict[str, Any]:
    """The JSON google.rpc.Status body of an error answer."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str)
    return body


def _violations(status: dict[str, Any]) -> list[str]:
    details = {d["@type"]: d for d in status["details"]}
    assert details[ERROR_INFO]["reason"]
    return [v["field"] for v in details[BAD_REQUEST]["fieldViolations"]]


def test_chat_then_its_turns_through_get(rest: httpx.Client) -> None:
    session = _session()
    taxonomy = {i["path"] for i in rest.get("/v1/intents").json()["intents"]}
    first = rest.post(f"/v1/sessions/{session}:chat", json={"message": "set an alarm for 7 am"})
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/json")
    turn = first.json()
    assert turn["reply"]
    assert turn["sessionId"] == session  # lowerCamelCase JSON names
    assert turn["turnIndex"] == 0
    assert turn["intent"]["intent"] in taxonomy
    assert 0 <= turn["intent"]["confidence"] <= 1
    assert turn["degraded"] == []  # every field printed, defaults included
    assert {t["stage"] for t in turn["timings"]} >= {"STAGE_CLASSIFY", "STAGE_RETRIEVE"}
    second = rest.post(
        f"/v1/sessions/{session}:chat",
        json={"message": "what time is it in Paris", "options": {"skip_memory": False}},
    )
    assert second.status_code == 200, second.text

    page = rest.get(f"/v1/sessions/{session}/turns", params={"page_size": 1})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["totalTurns"] == 2
    assert [t["userMessage"] for t in body["turns"]] == ["set an alarm for 7 am"]
    assert body["turns"][0]["intent"]["intent"] == turn["intent"]["intent"]
    assert body["nextPageToken"]
    rest_page = rest.get(
        f"/v1/sessions/{session}/turns",
        params={"pageSize": 5, "pageToken": body["nextPageToken"]},  # JSON names work too
    )
    assert rest_page.status_code == 200, rest_page.text
    assert [t["userMessage"] for t in rest_page.json()["turns"]] == ["what time is it in Paris"]
    assert rest_page.json()["nextPageToken"] == ""


def test_classify_and_list_intents(rest: httpx.Client) -> None:
    listed = rest.get("/v1/intents")
    assert listed.status_code == 200, listed.text
    intents = {i["path"]: i for i in listed.json()["intents"]}
    assert intents["alarm/set"]["exampleCount"] > 0
    assert [d["name"] for d in listed.json()["domains"]] == sorted(
        d["name"] for d in listed.json()["domains"]
    )

    reply = rest.post("/v1/intents:classify", json={"text": "wake me up at six tomorrow"})
    assert reply.status_code == 200, reply.text
    verdict = reply.json()["classification"]
    assert verdict["intent"] in intents or verdict["outOfScope"]
    assert verdict["hierarchy"]["l1"] == verdict["intent"].split("/")[0]
    assert len(verdict["alternatives"]) == 3  # the server default top_k


def test_context_search_finds_what_the_session_said(rest: httpx.Client) -> None:
    session = _session()
    said = rest.post(f"/v1/sessions/{session}:chat", json={"message": "my dog is called Rex"})
    assert said.status_code == 200, said.text
    found = rest.post(
        "/v1/context:search",
        # proto field names are accepted as well as JSON names
        json={"query": "what is my dog called", "session_id": session, "maxResults": 5},
    )
    assert found.status_code == 200, found.text
    body = found.json()
    memory = [s for s in body["sources"] if s["kind"] == "SOURCE_KIND_MEMORY"]
    assert any("Rex" in s["content"] for s in memory), body
    assert body["memoryStats"]["workingCount"] >= 1


def test_chat_stream_is_newline_delimited_json(rest: httpx.Client) -> None:
    session = _session()
    with rest.stream(
        "POST", f"/v1/sessions/{session}:chatStream", json={"message": "play some jazz"}
    ) as response:
        assert response.status_code == 200
        events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    kinds = [next(iter(event)) for event in events]
    assert all(len(event) == 1 for event in events)  # one member of the oneof each
    assert kinds[0] == "stage"
    assert kinds[-1] == "summary"
    assert "replyChunk" in kinds
    chunks = "".join(e["replyChunk"]["text"] for e in events if "replyChunk" in e)
    assert chunks == events[-1]["summary"]["reply"]
    assert events[-1]["summary"]["sessionId"] == session


def test_invalid_argument_is_400_with_the_field_violations(rest: httpx.Client) -> None:
    blank = _status(rest.post("/v1/intents:classify", json={"text": "   "}), 400, 3)
    assert _violations(blank) == ["text"]
    assert "text" in blank["message"]

    bad_session = urllib.parse.quote("bad session!", safe="")
    chat = rest.post(f"/v1/sessions/{bad_session}:chat", json={"message": ""})
    assert sorted(_violations(_status(chat, 400, 3))) == ["message", "session_id"]

    turns = rest.get(f"/v1/sessions/{bad_session}/turns", params={"page_size": 500})
    assert sorted(_violations(_status(turns, 400, 3))) == ["page_size", "session_id"]


def test_requests_the_transcoder_refuses_are_400_json(rest: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    bad_json = rest.post("/v1/intents:classify", content=b'{"text": ', headers=headers)
    assert _status(bad_json, 400, 3)["details"] == []

    unknown_param = _status(rest.get("/v1/intents", params={"verbose": "1"}), 400, 3)
    assert "verbose" in unknown_param["message"]

    wrong_type = _status(rest.get("/v1/sessions/s1/turns", params={"page_size": "ten"}), 400, 3)
    assert "page_size" in wrong_type["message"]

    session = _session()
    conflict = rest.post(
        f"/v1/sessions/{session}:chat", json={"message": "hi", "session_id": "someone-else"}
    )
    assert "session_id" in _status(conflict, 400, 3)["message"]
    # Under its JSON name the body field escapes the transcoder's collision check, but
    # the path still wins: a body never moves a turn to another session.
    spelled = rest.post(
        f"/v1/sessions/{session}:chat", json={"message": "hi", "sessionId": "someone-else"}
    )
    assert spelled.status_code == 200, spelled.text
    assert spelled.json()["sessionId"] == session
    assert rest.get("/v1/sessions/someone-else/turns").json()["totalTurns"] == 0


def test_an_unknown_route_is_404_json(rest: httpx.Client) -> None:
    missing = _status(rest.get("/v1/nothing-here"), 404, 5)
    assert missing["message"] == "no route for GET /v1/nothing-here"
    _status(rest.get("/v1/intents:classify"), 404, 5)  # the route is POST only
    _status(rest.delete("/v1/intents"), 404, 5)
    long_path = "/v1/" + "x" * 10_000
    assert len(_status(rest.get(long_path), 404, 5)["message"]) < 300  # the echo is capped


def test_every_documented_operation_is_served(rest: httpx.Client) -> None:
    """docs/openapi.yaml and the edge agree: each operation is routed (never a 404), and
    a 200 answer has only the fields its schema documents."""
    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    schemas = document["components"]["schemas"]
    session = _session()
    for template, item in document["paths"].items():
        path = re.sub(r"\{\w+\}", session, template)
        for verb, operation in item.items():
            body = {"message": "hello", "text": "hello", "query": "hello"}
            sent = body if "requestBody" in operation else None
            response = rest.request(verb.upper(), path, json=sent)
            assert response.status_code == 200, (verb, path, response.text)
            schema = operation["responses"]["200"]["content"]
            content_type, media = next(iter(schema.items()))
            assert response.headers["content-type"].startswith("application/json")
            documented = schemas[media["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
            lines = (
                response.text.splitlines() if content_type.endswith("ndjson") else [response.text]
            )
            for line in lines:
                assert set(json.loads(line)) <= set(documented), (path, line)


# -- failures of the upstream, through fake apps ---------------------------------------------


async def test_upstream_failures_are_json_with_their_http_status(
    topology: Topology, tmp_path: Path
) -> None:
    topo = sub_topology(topology, {"classification": 1})
    async with running_mesh(topo, MeshSettings(retry_attempts=0), tmp_path) as mesh:
        await wait_healthy(mesh, "classification", 1)
        url = f"http://{mesh.edge}/v1/intents:classify"
        ok = await mesh.http.post(url, json={"text": "hi"})
        mesh.modules["classification-0"].state.mode = "unavailable"
        unavailable = await mesh.http.post(url, json={"text": "hi"})
        mesh.modules["classification-0"].state.mode = "slow"
        mesh.modules["classification-0"].state.slow_s = 3.0  # the route's timeout is 2 s
        timed_out = await mesh.http.post(url, json={"text": "hi"}, timeout=10)

    assert ok.status_code == 200, ok.text
    assert ok.json()["classification"]["intent"] == "test/echo"
    assert _status(unavailable, 503, 14)["message"] == "injected fault"
    _status(timed_out, 504, 4)


def _filters(config: dict[str, Any]) -> list[str]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return [f["name"] for f in hcm["typed_config"]["http_filters"]]


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def test_the_transcoder_sits_at_the_edge_only(topology: Topology) -> None:
    settings = MeshSettings()
    plan = make_plan(topology, settings)
    edge = render_edge(plan, settings)
    assert _filters(edge) == [
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_web",
        TRANSCODER,
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.router",
    ]
    (transcoder,) = (
        f["typed_config"] for f in _hcm(edge)["http_filters"] if f["name"] == TRANSCODER
    )
    exposed = {plan.topology.services[name].grpc_service for name in plan.topology.edge_routes}
    assert set(transcoder["services"]) == exposed
    # the packaged descriptor set holds every service the transcoder is told about
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_path().read_bytes())
    packaged = {f"{f.package}.{s.name}" for f in descriptors.file for s in f.service}
    assert exposed <= packaged
    assert transcoder["proto_descriptor"] == str(descriptor_set_path())
    assert "local_reply_config" in _hcm(edge)

    for replica in plan.all_replicas():
        sidecar = render_sidecar(plan, replica, settings)
        for listener in sidecar["static_resources"]["listeners"]:
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            assert TRANSCODER not in [f["name"] for f in hcm["http_filters"]]
            # a sidecar's own local replies (its not-delivered mark) stay gRPC, never JSON
            assert "body_format" not in str(hcm.get("local_reply_config", {}))

    off = MeshSettings(edge_rest=False)
    edge_off = render_edge(make_plan(topology, off), off)
    assert TRANSCODER not in _filters(edge_off)
    assert "local_reply_config" not in _hcm(edge_off)


def test_a_keyed_chat_over_rest_sends_its_key_as_a_header_too(rest: httpx.Client) -> None:
    """A REST caller sends the request_id in the body and the x-switchboard-request-id
    header (which lets the edge resend the turn); a repeat answers the same turn, and a
    header without the body's key is refused before anything is written."""
    session = _session()
    key = str(uuid.uuid4())
    headers = {"x-switchboard-request-id": key}
    url = f"/v1/sessions/{session}:chat"
    body = {"message": "set an alarm for 7 am", "requestId": key}
    first = rest.post(url, json=body, headers=headers)
    again = rest.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json()["turnIndex"] == first.json()["turnIndex"] == 0
    assert again.json()["reply"] == first.json()["reply"]
    lie = rest.post(url, json={"message": "set an alarm for 8 am"}, headers=headers)
    assert _violations(_status(lie, 400, 3)) == ["request_id"]
    turns = rest.get(f"/v1/sessions/{session}/turns").json()
    assert turns["totalTurns"] == 1
