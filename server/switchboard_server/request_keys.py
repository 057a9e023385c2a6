"""The ``request_id`` of a write request (AIP-155) into a domain :class:`RequestKey`.

A caller that sets the body's ``request_id`` also sends it as the
``x-switchboard-request-id`` header (:data:`~switchboard_client.REQUEST_ID_HEADER`):
Envoy cannot read the body, so the header is what lets the mesh resend a keyed write.
The header must never claim a key the body lacks, or Envoy would resend a write that
cannot be deduplicated: a header that disagrees with the body is a field violation.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from google.protobuf.message import Message

from switchboard_client import REQUEST_ID_HEADER
from switchboard_server.idempotency import RequestKey
from switchboard_server.validation import Violations

FIELD = "request_id"


class HasMetadata(Protocol):
    """What :func:`header_request_id` needs of a servicer context."""

    def invocation_metadata(self) -> Iterable[Any] | None: ...


def header_request_id(context: HasMetadata) -> str | None:
    """The request's :data:`REQUEST_ID_HEADER` value; None when it sent none. Several
    values come back joined by commas, so they match no body key."""
    values = [
        str(value)
        for key, value in (context.invocation_metadata() or ())
        if key.lower() == REQUEST_ID_HEADER
    ]
    return ",".join(values) if values else None


def request_key(
    v: Violations, request: Message, request_id: str, header: str | None = None
) -> RequestKey | None:
    """The key of ``request`` (whose ``request_id`` field holds ``request_id``); None
    when it has none. Anything but a UUID in its canonical 8-4-4-4-12 form is a field
    violation, and so is a ``header`` (the request's :data:`REQUEST_ID_HEADER`, None
    when absent) that is not the same key.

    The hash covers the request's deterministic serialisation with ``request_id``
    cleared, so a repeat matches exactly when every other field is equal.
    """
    if header is not None and header.lower() != request_id.lower():
        v.add(FIELD, f"must be set and equal to the {REQUEST_ID_HEADER} header when it is sent")
        return None
    if not request_id:
        return None
    try:
        parsed = str(uuid.UUID(request_id))
    except ValueError:
        parsed = ""
    if parsed != request_id.lower():
        v.add(FIELD, "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000")
        return None
    return RequestKey(parsed, request_hash(request))


def request_hash(request: Message) -> str:
    """SHA-256 of the request's deterministic serialisation without its ``request_id``."""
    bare = type(request)()
    bare.CopyFrom(request)
    bare.ClearField(FIELD)
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()
