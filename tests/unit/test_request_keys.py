"""request_id validation and the request hash (AIP-155)."""

from __future__ import annotations

import uuid

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard_client import REQUEST_ID_HEADER
from switchboard_server.idempotency import RequestKey
from switchboard_server.request_keys import header_request_id, request_hash, request_key
from switchboard_server.validation import Violations


def append(content: str, request_id: str = "") -> pb.AppendMemoryRequest:
    return pb.AppendMemoryRequest(
        session_id="s",
        entries=[pb.MemoryEntry(type=pb.MEMORY_TYPE_WORKING, content=content)],
        request_id=request_id,
    )


def test_no_request_id_is_no_key() -> None:
    v = Violations()
    assert request_key(v, append("x"), "") is None
    assert not v


def test_only_a_canonical_uuid_is_a_key() -> None:
    for bad in ("42", "not-a-uuid", "{12345678-1234-5678-1234-567812345678}",
                "12345678123456781234567812345678"):  # fmt: skip
        v = Violations()
        assert request_key(v, append("x", bad), bad) is None
        assert [f.field for f in v.items] == ["request_id"]
    upper = str(uuid.uuid4()).upper()
    v = Violations()
    key = request_key(v, append("x", upper), upper)
    assert not v
    assert key is not None
    assert key.request_id == upper.lower()


def test_the_hash_ignores_the_key_and_sees_every_other_field() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    assert request_hash(append("x", a)) == request_hash(append("x", b)) == request_hash(append("x"))
    assert request_hash(append("x", a)) != request_hash(append("y", a))


def test_derived_ids_are_stable_per_request_and_distinct_across_requests() -> None:
    k = RequestKey(str(uuid.uuid4()), "h")
    assert k.derived_id("memory") == k.derived_id("memory")
    assert k.derived_id("memory") != RequestKey(str(uuid.uuid4()), "h").derived_id("memory")
    assert str(uuid.UUID(k.derived_id("memory"))) == k.derived_id("memory")


class _Context:
    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_the_header_is_read_from_the_call_metadata() -> None:
    key = str(uuid.uuid4())
    assert header_request_id(_Context(("x-correlation-id", "c"))) is None
    assert header_request_id(_Context((REQUEST_ID_HEADER, key))) == key
    twice = _Context((REQUEST_ID_HEADER, key), (REQUEST_ID_HEADER, key))
    assert header_request_id(twice) == f"{key},{key}"  # matches no body key


def test_a_header_must_repeat_the_body_key() -> None:
    """The header is what lets Envoy resend a write: it may never claim a key the body
    lacks or contradicts."""
    key = str(uuid.uuid4())
    v = Violations()
    found = request_key(v, append("x", key), key, header=key.upper())
    assert not v
    assert found is not None
    assert found.request_id == key
    for body, header in (("", key), (str(uuid.uuid4()), key), (key, f"{key},{key}")):
        v = Violations()
        assert request_key(v, append("x", body), body, header=header) is None
        assert [f.field for f in v.items] == ["request_id"]
        assert REQUEST_ID_HEADER in v.items[0].description
