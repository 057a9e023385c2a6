"""docs/openapi.yaml is in step with the google.api.http options in the protos, and is a
well-formed description of what the edge's transcoder sends and accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf.descriptor import ServiceDescriptor

from scripts import gen_openapi
from switchboard.classification.v1 import classification_service_pb2
from switchboard.context.v1 import context_service_pb2
from switchboard.orchestration.v1 import orchestration_service_pb2

ROOT = Path(__file__).parents[2]
OPENAPI = ROOT / "docs" / "openapi.yaml"
MODULES = (classification_service_pb2, context_service_pb2, orchestration_service_pb2)
VERBS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())  # type: ignore[no-any-return]


def _services() -> Iterator[ServiceDescriptor]:
    for module in MODULES:
        yield from module.DESCRIPTOR.services_by_name.values()


def _rules() -> Iterator[tuple[str, str, str, str]]:
    """(verb, path, body, operationId) of every google.api.http option in the protos."""
    for service in _services():
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            for verb in VERBS:
                if rule.HasField(verb):
                    yield verb, getattr(rule, verb), rule.body, f"{service.name}_{method.name}"


def test_openapi_is_regenerated_from_the_protos(tmp_path: Path) -> None:
    """A fresh descriptor set from protos/ gives the committed document, byte for byte."""
    descriptor_set = tmp_path / "api.binpb"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gen_protos.py"),
            str(tmp_path / "clients"),
            "--descriptor-set",
            str(descriptor_set),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert gen_openapi.render(descriptor_set) == OPENAPI.read_text(), (
        "docs/openapi.yaml is out of step with the protos: run `make proto` and commit"
    )


def test_every_http_rule_is_an_operation_and_nothing_else(document: dict[str, Any]) -> None:
    rules = {(verb, path, op) for verb, path, _, op in _rules()}
    documented = {
        (verb, path, operation["operationId"])
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }
    assert rules == documented
    assert ("post", "/v1/sessions/{session_id}:chat", "OrchestrationService_Chat") in rules
    assert ("get", "/v1/intents", "ClassificationService_ListIntents") in rules


def test_path_variables_are_required_path_parameters(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        variables = set(re.findall(r"\{(\w+)\}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert declared == variables, path
            assert all(p["required"] for p in operation.get("parameters", ()) if p["in"] == "path")


def test_the_body_holds_the_rest_of_the_request(document: dict[str, Any]) -> None:
    chat = document["paths"]["/v1/sessions/{session_id}:chat"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    # session_id is in the path; request_id is the idempotency key (AIP-155)
    assert set(body["properties"]) == {"message", "options", "requestId"}
    turns = document["paths"]["/v1/sessions/{session_id}/turns"]["get"]
    assert "requestBody" not in turns
    query = {p["name"]: p["schema"]["type"] for p in turns["parameters"] if p["in"] == "query"}
    assert query == {"page_size": "integer", "page_token": "string"}


def test_schemas_use_json_names_and_every_ref_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    response = schemas["switchboard.orchestration.v1.ChatResponse"]["properties"]
    assert {"sessionId", "turnIndex", "correlationId", "totalMs"} <= set(response)
    refs = set(re.findall(r"\$ref: '#/components/schemas/([\w.]+)'", OPENAPI.read_text()))
    assert refs, "no $ref at all"
    assert refs <= set(schemas)


def test_errors_and_streams_are_described_as_the_transcoder_sends_them(
    document: dict[str, Any],
) -> None:
    status = document["components"]["schemas"]["google.rpc.Status"]["properties"]
    assert status["details"]["type"] == "array"
    assert status["details"]["items"]["properties"]["@type"] == {"type": "string"}
    assert {"google.rpc.BadRequest", "google.rpc.ErrorInfo"} <= set(
        document["components"]["schemas"]
    )
    for item in document["paths"].values():
        for operation in item.values():
            error = operation["responses"]["default"]["content"]["application/json"]
            assert error["schema"] == {"$ref": "#/components/schemas/google.rpc.Status"}
    stream = document["paths"]["/v1/sessions/{session_id}:chatStream"]["post"]
    assert set(stream["responses"]["200"]["content"]) == {"application/x-ndjson"}
