"""Errors raised by the Switchboard clients, mapped from ``grpc.aio.AioRpcError``.

The status code picks the class; a known ``ErrorInfo.reason`` may pick a subclass.
Every error carries the code, the reason, ``ErrorInfo`` metadata and the
correlation id the server returned. The tree::

    SwitchboardError                  any failed call (also UNKNOWN, INTERNAL, DATA_LOSS)
    ├── InvalidArgument               INVALID_ARGUMENT; .violations from BadRequest
    ├── NotFound                      NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    ├── FailedPrecondition            FAILED_PRECONDITION
    ├── PermissionDenied              PERMISSION_DENIED, UNAUTHENTICATED
    ├── ResourceExhausted             RESOURCE_EXHAUSTED (rate limited, overloaded)
    ├── Unimplemented                 UNIMPLEMENTED
    ├── Cancelled                     CANCELLED
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    └── Unavailable                   UNAVAILABLE (down, draining, not ready); safe to retry
        └── NotReady                  reason NOT_READY / MODEL_NOT_READY

``ErrorReason`` lists the reasons the Switchboard server sends; ``reason`` may still
hold another string (a proxy's, or a newer server's), so compare, do not convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ErrorReason(StrEnum):
    """The ``ErrorInfo.reason`` values a Switchboard server sends.

    A mirror of the server's own list (the client does not depend on the server
    package); a test fails when the two differ.
    """

    INTERNAL = "INTERNAL"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_READY = "NOT_READY"
    """The service is starting (its store is not open yet): :class:`NotReady`."""
    MODEL_NOT_READY = "MODEL_NOT_READY"
    """The classifier's model is still loading or training: :class:`NotReady`."""
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    """The context store cannot be reached: :class:`Unavailable`."""
    EMBEDDINGS_UNAVAILABLE = "EMBEDDINGS_UNAVAILABLE"
    """The embeddings backend is not installed on the server: :class:`FailedPrecondition`."""
    RUNTIME_EXAMPLES_FULL = "RUNTIME_EXAMPLES_FULL"
    """The run-time example store is full: :class:`ResourceExhausted`."""
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    """The request_id was used before for a different request: :class:`AlreadyExists`."""
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    """The request bytes do not decode as the method's request message (a client built
    from other ``.proto`` files, or a corrupted message): :class:`InvalidArgument`."""
    METADATA_TOO_LARGE = "METADATA_TOO_LARGE"
    """The request metadata (headers) exceed the server's limit: :class:`ResourceExhausted`."""
    OPERATOR_IDENTITY_REQUIRED = "OPERATOR_IDENTITY_REQUIRED"
    """An admin method called without the mesh's operator identity (a sidecar's RBAC):
    :class:`PermissionDenied`."""
    CALLER_NOT_ALLOWED = "CALLER_NOT_ALLOWED"
    """A mesh identity the topology does not let call this service (a sidecar's RBAC):
    :class:`PermissionDenied`."""


class EdgeReason(StrEnum):
    """The ``ErrorInfo.reason`` values the edge Envoy sends (domain ``edge.switchboard``);
    the edge's rendering uses these very values."""

    TOKEN_MISSING = "TOKEN_MISSING"
    """No bearer token: :class:`PermissionDenied` (code UNAUTHENTICATED)."""
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    """The token's ``exp`` has passed: :class:`PermissionDenied` (code UNAUTHENTICATED)."""
    TOKEN_INVALID = "TOKEN_INVALID"
    """Bad signature, issuer or audience, or not a JWT: :class:`PermissionDenied`."""
    CLIENT_RATE_LIMITED = "CLIENT_RATE_LIMITED"
    """This client (the token's subject) is over its rate: :class:`ResourceExhausted`,
    with a ``RetryInfo``."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field (``field`` is a path like ``options.top_k``) and why."""

    field: str
    description: str


class SwitchboardError(Exception):
    """A call failed; ``code`` is the gRPC status, ``reason`` the ErrorInfo reason."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        correlation_id: str = "",
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.correlation_id = correlation_id
        self.violations = violations

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.violations:
            text += " (" + "; ".join(f"{v.field}: {v.description}" for v in self.violations) + ")"
        return text


class InvalidArgument(SwitchboardError):
    """The request was malformed; ``violations`` names each bad field."""

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.violations]


class NotFound(SwitchboardError):
    """A named resource does not exist."""


class AlreadyExists(SwitchboardError):
    """The resource to create exists already."""


class FailedPrecondition(SwitchboardError):
    """The system is not in a state where the request can run."""


class PermissionDenied(SwitchboardError):
    """The caller is not allowed to do this (or is not authenticated)."""


class ResourceExhausted(SwitchboardError):
    """A quota or capacity is used up; retry later."""


class Unimplemented(SwitchboardError):
    """The server does not implement this method."""


class Cancelled(SwitchboardError):
    """The call was cancelled."""


class DeadlineExceeded(SwitchboardError):
    """The deadline ran out before the call finished."""


class Unavailable(SwitchboardError):
    """The service cannot answer now; safe to retry."""


class NotReady(Unavailable):
    """The service is up but not ready yet (model loading, store opening)."""


_BY_CODE: dict[grpc.StatusCode, type[SwitchboardError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}

# Reasons that pick a subclass of the status code's class; the others keep the code's.
_BY_REASON: dict[str, type[SwitchboardError]] = {
    ErrorReason.NOT_READY: NotReady,
    ErrorReason.MODEL_NOT_READY: NotReady,
}


def _metadata_value(metadata: Any, key: str) -> Any:
    for item_key, value in metadata or ():
        if item_key == key:
            return value
    return None


def from_rpc_error(error: grpc.aio.AioRpcError) -> SwitchboardError:
    """The SwitchboardError for a failed call, with its rich status details parsed."""
    code = error.code()
    trailing = error.trailing_metadata()
    reason = domain = ""
    info_metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    raw = _metadata_value(trailing, STATUS_DETAILS_KEY)
    if isinstance(raw, bytes):
        status = status_pb2.Status()
        try:
            status.ParseFromString(raw)
        except Exception:  # undecodable details are ignored
            status = status_pb2.Status()
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, info_metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    correlation = _metadata_value(trailing, "x-correlation-id")
    cls = _BY_CODE.get(code, SwitchboardError)
    refined = _BY_REASON.get(reason)
    if refined is not None and issubclass(refined, cls):
        cls = refined
    return cls(
        error.details() or code.name,
        code=code,
        reason=reason or code.name,
        domain=domain,
        metadata=info_metadata,
        correlation_id=correlation if isinstance(correlation, str) else "",
        violations=tuple(violations),
    )
