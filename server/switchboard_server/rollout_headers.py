"""Headers of a rollout between variants (:mod:`switchboard_server.mesh.rollout.variants`).

* :data:`BUCKET_HEADER`: set by a caller (orchestration) on calls to a service that may
  have variants: the session's bucket in ``[0, TOTAL_WEIGHT)``. The caller's Envoy picks
  the variant by it, so one conversation never flips between models.
* :data:`SHADOW_HEADER`: set by a variant's sidecar on a mirrored request (Envoy sends
  the copy with ``-shadow`` appended to the authority). The app answers it like any
  other, but writes nothing and counts it apart; the answer never reaches the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

BUCKET_HEADER = "x-switchboard-session-bucket"
SHADOW_HEADER = "x-switchboard-shadow"
TOTAL_WEIGHT = 10_000


def session_bucket(session_id: str) -> int:
    """The session's bucket: the same on every call and in every process."""
    digest = hashlib.sha256(session_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % TOTAL_WEIGHT


class HasMetadata(Protocol):
    def invocation_metadata(self) -> Iterable[Any] | None: ...


def is_shadow(context: HasMetadata) -> bool:
    """The request is a mirrored copy (its sidecar marked it)."""
    return any(key == SHADOW_HEADER for key, _ in context.invocation_metadata() or ())


def envoy_request_id(context: HasMetadata) -> str:
    """The ``x-request-id`` Envoy gave the request (a mirrored copy keeps it)."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return str(value)
    return ""
