"""The ``request_id`` of a write request (AIP-155) into a domain :class:`RequestKey`."""

from __future__ import annotations

import hashlib
import uuid

from google.protobuf.message import Message

from switchboard_server.idempotency import RequestKey
from switchboard_server.validation import Violations

FIELD = "request_id"


def request_key(v: Violations, request: Message, request_id: str) -> RequestKey | None:
    """The key of ``request`` (whose ``request_id`` field holds ``request_id``); None
    when it has none. Anything but a UUID in its canonical 8-4-4-4-12 form is a field
    violation.

    The hash covers the request's deterministic serialisation with ``request_id``
    cleared, so a repeat matches exactly when every other field is equal.
    """
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
