"""Domain errors to gRPC statuses with ``google.rpc.Status`` details (ErrorInfo, BadRequest).

An error answer travels in the response trailers, and every client limits how much
metadata it accepts: a default grpcio client refuses more than 8 KiB at random and more
than 16 KiB always, answering RESOURCE_EXHAUSTED in place of the server's status. So
whatever the request, an answer here stays bounded:

* at most :data:`MAX_FIELD_VIOLATIONS` field violations; the message and
  ``ErrorInfo.metadata["field_violations"]`` say how many there were in all;
* a ``grpc-message`` of at most :data:`MAX_MESSAGE_BYTES` as sent (percent-encoded);
* echoed field paths, descriptions and ErrorInfo metadata values cut to a few hundred
  bytes, and the whole serialized ``google.rpc.Status`` (message and details) to
  :data:`MAX_STATUS_BYTES`, so with its base64 encoding and the other trailers it stays
  under the 8 KiB a default client accepts.

These are protocol bounds, not tuning knobs: raising them breaks default clients.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from switchboard_server import errors

MAX_FIELD_VIOLATIONS = 20
MAX_MESSAGE_BYTES = 1024
MAX_STATUS_BYTES = 4096
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
MAX_INFO_ENTRIES = 8
MAX_INFO_KEY_BYTES = 64
MAX_INFO_VALUE_BYTES = 256
ELLIPSIS = "..."

_CODES: dict[type[errors.SwitchboardError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def code_for(error: errors.SwitchboardError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def _sent_size(char: str) -> int:
    """Bytes ``char`` takes in ``grpc-message``: printable ASCII as is, else %XX per byte."""
    if " " <= char <= "~" and char != "%":
        return 1
    return 3 * len(char.encode("utf-8"))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes as sent in ``grpc-message`` (the
    percent-encoded form, never shorter than its UTF-8), ending in ``...`` when cut."""
    if len(text) * 9 <= limit:  # quick exit: no character takes more than 9 bytes
        return text
    sizes = [_sent_size(c) for c in text]
    if sum(sizes) <= limit:
        return text
    budget, end = limit - len(ELLIPSIS), 0
    while end < len(text) and budget >= sizes[end]:
        budget -= sizes[end]
        end += 1
    return text[:end] + ELLIPSIS


def _message(error: errors.SwitchboardError, listed: list[errors.FieldViolation]) -> str:
    if not (isinstance(error, errors.InvalidArgument) and error.describes_violations):
        return truncate(error.message, MAX_MESSAGE_BYTES)
    more = len(error.violations) - len(listed)
    suffix = f" (and {more} more field violation{'s' if more > 1 else ''})" if more else ""
    return truncate(errors.describe(listed), MAX_MESSAGE_BYTES - len(suffix)) + suffix


def _status(
    error: errors.SwitchboardError,
    code: grpc.StatusCode,
    listed: list[errors.FieldViolation],
    metadata: dict[str, str],
) -> status_pb2.Status:
    metadata = dict(metadata)
    violations = error.violations if isinstance(error, errors.InvalidArgument) else ()
    if len(listed) < len(violations):
        metadata["field_violations"] = str(len(violations))
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=error.reason.value, domain=errors.ERROR_DOMAIN, metadata=metadata
        )
    )
    details = [info]
    if listed:
        packed = any_pb2.Any()
        packed.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in listed
                ]
            )
        )
        details.append(packed)
    return status_pb2.Status(
        code=getattr(code_pb2, code.name), message=_message(error, listed), details=details
    )


def to_grpc_status(error: errors.SwitchboardError) -> grpc.Status:
    """A ``grpc.Status`` whose trailers carry ErrorInfo (and BadRequest when relevant),
    bounded in size whatever the error holds (see the module docstring)."""
    code = code_for(error)
    violations = error.violations if isinstance(error, errors.InvalidArgument) else ()
    listed = [
        errors.FieldViolation(
            truncate(v.field, MAX_FIELD_BYTES), truncate(v.description, MAX_DESCRIPTION_BYTES)
        )
        for v in violations[:MAX_FIELD_VIOLATIONS]
    ]
    metadata = {
        truncate(k, MAX_INFO_KEY_BYTES): truncate(v, MAX_INFO_VALUE_BYTES)
        for k, v in list(error.metadata.items())[:MAX_INFO_ENTRIES]
    }
    status = _status(error, code, listed, metadata)
    while status.ByteSize() > MAX_STATUS_BYTES and (listed or metadata):
        # long fields and descriptions: list fewer of them (then drop the metadata)
        if listed:
            listed.pop()
        else:
            metadata.clear()
        status = _status(error, code, listed, metadata)
    return rpc_status.to_status(status)
