"""The server's ErrorInfo reasons and the typed client's mirror of them stay one set."""

from __future__ import annotations

import grpc

import switchboard_client
from switchboard_client import NotReady, Unavailable, from_rpc_error
from switchboard_server import errors as server_errors
from switchboard_server.rpc_errors import to_grpc_status


def test_the_client_knows_exactly_the_reasons_the_server_sends() -> None:
    server = {reason.value for reason in server_errors.ErrorReason}
    client = {reason.value for reason in switchboard_client.ErrorReason}
    assert server - client == set(), "reasons the client does not know"
    assert client - server == set(), "reasons the server never sends"


def test_every_error_class_defaults_to_a_known_reason() -> None:
    known = {reason.value for reason in switchboard_client.ErrorReason}
    base = server_errors.SwitchboardError
    classes: list[type[server_errors.SwitchboardError]] = [base, *base.__subclasses__()]
    assert len(classes) == 8
    for cls in classes:
        assert cls.default_reason.value in known, cls


def rpc_error(error: server_errors.SwitchboardError) -> grpc.aio.AioRpcError:
    status = to_grpc_status(error)
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), "x", None
    )


def test_a_store_outage_is_unavailable_but_not_not_ready() -> None:
    error = from_rpc_error(
        rpc_error(
            server_errors.Unavailable(
                "context store unavailable", reason=server_errors.ErrorReason.STORE_UNAVAILABLE
            )
        )
    )
    assert type(error) is Unavailable
    assert error.reason == switchboard_client.ErrorReason.STORE_UNAVAILABLE


def test_a_starting_service_is_not_ready() -> None:
    error = from_rpc_error(
        rpc_error(
            server_errors.Unavailable(
                "context service is not ready", reason=server_errors.ErrorReason.NOT_READY
            )
        )
    )
    assert type(error) is NotReady
    assert error.reason == "NOT_READY"
