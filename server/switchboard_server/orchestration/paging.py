"""Opaque page tokens for GetConversation, bound to the session they were issued for."""

from __future__ import annotations

import base64
import binascii
import hashlib

from switchboard_server.errors import InvalidArgument

_VERSION = "v1"


def _session_tag(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:12]


def encode_page_token(session_id: str, index: int) -> str:
    raw = f"{_VERSION}:{index}:{_session_tag(session_id)}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page_token(session_id: str, token: str, field: str = "page_token") -> int:
    """The turn index a token points at; InvalidArgument naming ``field`` if it is not ours."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        version, index, tag = raw.split(":")
        value = int(index)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument.field(field, "is not a token this server issued") from exc
    if version != _VERSION or value < 0:
        raise InvalidArgument.field(field, "is not a token this server issued")
    if tag != _session_tag(session_id):
        raise InvalidArgument.field(field, "was issued for a different session")
    return value
