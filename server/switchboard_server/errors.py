"""Domain errors, independent of gRPC.

Domain and servicer code raise these; the server interceptor turns them into a
canonical gRPC status with ``google.rpc.Status`` details (``ErrorInfo`` always,
``BadRequest`` for field violations). The tree::

    SwitchboardError                 INTERNAL
    ├── InvalidArgument              INVALID_ARGUMENT   (+ BadRequest field violations)
    ├── NotFound                     NOT_FOUND
    ├── AlreadyExists                ALREADY_EXISTS
    ├── FailedPrecondition           FAILED_PRECONDITION
    ├── ResourceExhausted            RESOURCE_EXHAUSTED
    ├── Unavailable                  UNAVAILABLE        (not ready, draining, dependency down)
    └── DeadlineExceeded             DEADLINE_EXCEEDED

Every ``ErrorInfo.reason`` the server sends is an :class:`ErrorReason`; the typed
client mirrors the set (``switchboard_client.ErrorReason``) and a test fails when the
two differ, so a new reason is added here and there in the same change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

ERROR_DOMAIN = "switchboard.dev"


class ErrorReason(StrEnum):
    """The UPPER_SNAKE ``ErrorInfo.reason`` values the server sends (AIP-193)."""

    # The default of each error class: the status code's own name.
    INTERNAL = "INTERNAL"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    # Refinements a client may act on.
    NOT_READY = "NOT_READY"
    """UNAVAILABLE: the service is starting (its store is not open yet)."""
    MODEL_NOT_READY = "MODEL_NOT_READY"
    """UNAVAILABLE: the classifier's model is still loading or training."""
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    """UNAVAILABLE: the context store (Redis) cannot be reached."""
    EMBEDDINGS_UNAVAILABLE = "EMBEDDINGS_UNAVAILABLE"
    """FAILED_PRECONDITION: the embeddings backend is asked for but not installed."""
    RUNTIME_EXAMPLES_FULL = "RUNTIME_EXAMPLES_FULL"
    """RESOURCE_EXHAUSTED: the run-time example store holds its maximum."""
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    """ALREADY_EXISTS: the request_id was used before for a different request."""
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    """INVALID_ARGUMENT: the request bytes do not decode as the method's request message."""
    METADATA_TOO_LARGE = "METADATA_TOO_LARGE"
    """RESOURCE_EXHAUSTED: the request metadata (headers) exceed the server's limit."""
    # Sent by a sidecar's RBAC filter (mesh/security/mtls.py), not by an app.
    OPERATOR_IDENTITY_REQUIRED = "OPERATOR_IDENTITY_REQUIRED"
    """PERMISSION_DENIED: an admin method needs the mesh's operator identity."""
    CALLER_NOT_ALLOWED = "CALLER_NOT_ALLOWED"
    """PERMISSION_DENIED: the topology does not let this mesh identity call this method."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: the field path (e.g. ``options.top_k``) and why."""

    field: str
    description: str


def describe(violations: Sequence[FieldViolation]) -> str:
    """``field: description; field: description; ...``"""
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


class SwitchboardError(Exception):
    """Base of every domain error; ``reason`` is an UPPER_SNAKE ``ErrorInfo.reason``."""

    default_reason: ClassVar[ErrorReason] = ErrorReason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: ErrorReason | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: ErrorReason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(SwitchboardError):
    """The request is malformed; ``violations`` names every bad field.

    Without ``message`` the message lists the violations (``describes_violations``),
    and the gRPC mapping may shorten that list to bound the answer's size.
    """

    default_reason = ErrorReason.INVALID_ARGUMENT

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        message: str | None = None,
        *,
        reason: ErrorReason | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.violations = tuple(violations)
        self.describes_violations = message is None
        if message is None:
            message = describe(self.violations)
        super().__init__(message, reason=reason, metadata=metadata)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """Shorthand for a single bad field."""
        return cls([FieldViolation(field, description)])


class NotFound(SwitchboardError):
    """A named resource does not exist."""

    default_reason = ErrorReason.NOT_FOUND


class AlreadyExists(SwitchboardError):
    """A resource to create exists already."""

    default_reason = ErrorReason.ALREADY_EXISTS


class FailedPrecondition(SwitchboardError):
    """The system is not in a state where the request can run."""

    default_reason = ErrorReason.FAILED_PRECONDITION


class ResourceExhausted(SwitchboardError):
    """A quota or capacity is used up; the caller may retry later."""

    default_reason = ErrorReason.RESOURCE_EXHAUSTED


class Unavailable(SwitchboardError):
    """The service (or a dependency) cannot answer now; safe to retry."""

    default_reason = ErrorReason.UNAVAILABLE


class DeadlineExceeded(SwitchboardError):
    """The caller's deadline ran out before the work finished."""

    default_reason = ErrorReason.DEADLINE_EXCEEDED
