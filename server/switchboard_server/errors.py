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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ERROR_DOMAIN = "switchboard.dev"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: the field path (e.g. ``options.top_k``) and why."""

    field: str
    description: str


class SwitchboardError(Exception):
    """Base of every domain error; ``reason`` is an UPPER_SNAKE ``ErrorInfo.reason``."""

    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(SwitchboardError):
    """The request is malformed; ``violations`` names every bad field."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.violations = tuple(violations)
        if message is None:
            message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message, reason=reason, metadata=metadata)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """Shorthand for a single bad field."""
        return cls([FieldViolation(field, description)])


class NotFound(SwitchboardError):
    """A named resource does not exist."""

    default_reason = "NOT_FOUND"


class AlreadyExists(SwitchboardError):
    """A resource to create exists already."""

    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(SwitchboardError):
    """The system is not in a state where the request can run."""

    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(SwitchboardError):
    """A quota or capacity is used up; the caller may retry later."""

    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(SwitchboardError):
    """The service (or a dependency) cannot answer now; safe to retry."""

    default_reason = "UNAVAILABLE"


class DeadlineExceeded(SwitchboardError):
    """The caller's deadline ran out before the work finished."""

    default_reason = "DEADLINE_EXCEEDED"
