"""Read the ``google.rpc.Status`` details of a failed call, as a user's client would."""

from __future__ import annotations

from typing import cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def error_details(exc: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """(the ErrorInfo, the BadRequest field names) in the trailers; fails if no Status."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    info = error_details_pb2.ErrorInfo()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return info, fields


def violated_fields(exc: grpc.aio.AioRpcError) -> list[str]:
    """The field names of the BadRequest in the trailers."""
    return error_details(exc)[1]


def trailing_metadata(exc: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    """The trailers of a failed call as a dict.

    grpc-stubs types ``AioRpcError.trailing_metadata()`` as the sync call's tuple; at
    run time it is a ``grpc.aio.Metadata``.
    """
    return dict(cast(grpc.aio.Metadata, exc.trailing_metadata()))
