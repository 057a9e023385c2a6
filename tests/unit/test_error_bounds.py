"""Error answers stay small whatever the request: what a default client can read.

The sizes are those of the trailers a client receives: ``grpc-message`` as sent
(percent-encoded) and ``grpc-status-details-bin`` (the serialized google.rpc.Status).
"""

from __future__ import annotations

import urllib.parse

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard_server import errors
from switchboard_server.rpc_errors import MAX_FIELD_VIOLATIONS, to_grpc_status, truncate
from switchboard_server.validation import Violations

DETAILS_KEY = "grpc-status-details-bin"
MAX_MESSAGE_SENT = 1024
MAX_DETAILS = 8 * 1024


def sent_message_size(message: str) -> int:
    """``grpc-message`` on the wire: percent-encoded outside printable ASCII, and ``%``."""
    return len(urllib.parse.quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"))


def received(error: errors.SwitchboardError) -> grpc.aio.AioRpcError:
    """The error as a client reads it (grpc-message equals the Status message)."""
    status = to_grpc_status(error)
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        status.details,
        None,
    )


def details_size(error: errors.SwitchboardError) -> int:
    status = to_grpc_status(error)
    return sum(len(v) for k, v in status.trailing_metadata if k == DETAILS_KEY)


def unpack(exc: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    info, fields = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        else:
            bad = error_details_pb2.BadRequest()
            assert detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return info, fields


def test_a_hundred_blank_texts_list_twenty_and_say_how_many_more() -> None:
    v = Violations()
    for i in range(100):
        v.text(f"texts[{i}]", "", max_bytes=4096)
    with pytest.raises(errors.InvalidArgument) as raised:
        v.raise_if_any()
    exc = received(raised.value)
    info, fields = unpack(exc)

    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == [f"texts[{i}]" for i in range(MAX_FIELD_VIOLATIONS)]
    assert (exc.details() or "").endswith("(and 80 more field violations)")
    assert info.reason == "INVALID_ARGUMENT"
    assert info.metadata["field_violations"] == "100"


def test_few_violations_are_all_listed_and_not_counted() -> None:
    exc = received(errors.InvalidArgument.field("text", "must not be empty"))
    info, fields = unpack(exc)
    assert fields == ["text"]
    assert exc.details() == "text: must not be empty"
    assert "field_violations" not in info.metadata


@pytest.mark.parametrize(
    "error",
    [
        # huge field paths and descriptions, in non-ASCII (3 bytes each, 9 as sent)
        errors.InvalidArgument(
            [errors.FieldViolation("é" * 50_000 + str(i), "☃" * 50_000) for i in range(500)]
        ),
        # a huge message and ErrorInfo metadata on any error
        errors.Unavailable(
            "%" * 200_000, metadata={f"k{i}" * 1000: "v" * 100_000 for i in range(100)}
        ),
        errors.InvalidArgument([], "x" * 100_000, reason=errors.ErrorReason.MALFORMED_REQUEST),
    ],
    ids=["violations", "message-and-metadata", "long-message"],
)
def test_every_answer_is_bounded_and_still_reads_as_a_rich_status(
    error: errors.SwitchboardError,
) -> None:
    exc = received(error)
    info, _ = unpack(exc)  # from_call checks that grpc-message matches the Status
    assert sent_message_size(exc.details() or "") <= MAX_MESSAGE_SENT
    assert "..." in (exc.details() or "")  # where it was cut
    assert details_size(error) <= MAX_DETAILS
    assert info.reason == error.reason.value


def test_a_huge_metadata_key_is_echoed_cut() -> None:
    v = Violations()
    v.metadata("metadata", {"k" * 40_000: "x"})
    (item,) = v.items
    assert item.field == "metadata['" + "k" * 32 + "...']"


def test_truncate_counts_bytes_as_sent() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 5) == "ab..."
    assert truncate("é" * 10, 20) == "éé..."  # 6 bytes per é as sent, 3 for ...
