"""Typed clients and the `switchboard` command line for the Switchboard mesh.

::

    from switchboard_client import ConnectConfig, OrchestrationClient, InvalidArgument

    async with OrchestrationClient(ConnectConfig("127.0.0.1:8080")) as client:
        response = await client.chat("what is switchboard?", session_id="s-1")
"""

from switchboard_client._base import REQUEST_ID_HEADER
from switchboard_client._classification import ClassificationClient
from switchboard_client._config import (
    DEFAULT_TARGET,
    DEV_TOKEN_RELPATH,
    ConnectConfig,
    discover_token,
)
from switchboard_client._context import ContextClient
from switchboard_client._errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    EdgeReason,
    ErrorReason,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    NotReady,
    PermissionDenied,
    ResourceExhausted,
    SwitchboardError,
    Unavailable,
    Unimplemented,
    from_rpc_error,
)
from switchboard_client._orchestration import OrchestrationClient

__all__ = [
    "DEFAULT_TARGET",
    "DEV_TOKEN_RELPATH",
    "REQUEST_ID_HEADER",
    "AlreadyExists",
    "Cancelled",
    "ClassificationClient",
    "ConnectConfig",
    "ContextClient",
    "DeadlineExceeded",
    "EdgeReason",
    "ErrorReason",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "NotReady",
    "OrchestrationClient",
    "PermissionDenied",
    "ResourceExhausted",
    "SwitchboardError",
    "Unavailable",
    "Unimplemented",
    "discover_token",
    "from_rpc_error",
]
