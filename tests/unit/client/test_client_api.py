"""The typed client's public API, error mapping, connect config and CLI rendering."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import grpc
import pytest

import switchboard_client
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client import (
    ConnectConfig,
    DeadlineExceeded,
    InvalidArgument,
    NotReady,
    SwitchboardError,
    Unavailable,
    from_rpc_error,
)
from switchboard_client.cli import build_parser
from switchboard_client.commands.chat import render
from switchboard_server import errors as server_errors
from switchboard_server.rpc_errors import to_grpc_status


def test_all_is_honest() -> None:
    exported = set(switchboard_client.__all__)
    assert len(exported) == len(switchboard_client.__all__)
    for name in exported:
        assert hasattr(switchboard_client, name), name
    public = {
        name
        for name, value in vars(switchboard_client).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == exported
    # every public class of the private modules is re-exported
    for info in pkgutil.iter_modules(switchboard_client.__path__):
        if not info.name.startswith("_"):
            continue
        module = importlib.import_module(f"switchboard_client.{info.name}")
        for name, value in vars(module).items():
            own_class = inspect.isclass(value) and value.__module__ == module.__name__
            if own_class and not name.startswith("_") and name != "BaseClient":
                assert name in exported, f"{info.name}.{name} is not re-exported"


def rpc_error(error: server_errors.SwitchboardError) -> grpc.aio.AioRpcError:
    status = to_grpc_status(error)
    trailing = grpc.aio.Metadata(*status.trailing_metadata, ("x-correlation-id", "corr-9"))
    return grpc.aio.AioRpcError(status.code, grpc.aio.Metadata(), trailing, status.details, None)


def test_invalid_argument_carries_field_violations() -> None:
    error = from_rpc_error(
        rpc_error(
            server_errors.InvalidArgument(
                [
                    server_errors.FieldViolation("message", "must not be empty"),
                    server_errors.FieldViolation("options.max_context_results", "too big"),
                ]
            )
        )
    )
    assert isinstance(error, InvalidArgument)
    assert error.fields == ["message", "options.max_context_results"]
    assert error.reason == "INVALID_ARGUMENT"
    assert error.domain == "switchboard.dev"
    assert error.correlation_id == "corr-9"
    assert "options.max_context_results: too big" in str(error)


def test_reason_refines_the_class_and_metadata_survives() -> None:
    error = from_rpc_error(
        rpc_error(
            server_errors.Unavailable(
                "loading", reason=server_errors.ErrorReason.MODEL_NOT_READY, metadata={"a": "b"}
            )
        )
    )
    assert type(error) is NotReady
    assert isinstance(error, Unavailable)
    assert error.metadata == {"a": "b"}


def test_status_without_details_maps_by_code() -> None:
    bare = grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "late", None
    )
    error = from_rpc_error(bare)
    assert type(error) is DeadlineExceeded
    assert error.reason == "DEADLINE_EXCEEDED"
    odd = grpc.aio.AioRpcError(
        grpc.StatusCode.DATA_LOSS, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone", None
    )
    assert type(from_rpc_error(odd)) is SwitchboardError


def test_connect_config_from_env_and_overrides() -> None:
    env = {"SWITCHBOARD_TARGET": "mesh:9000", "SWITCHBOARD_TIMEOUT_S": "2.5"}
    assert ConnectConfig.from_env(env) == ConnectConfig("mesh:9000", timeout_s=2.5)
    assert ConnectConfig.from_env(env, target="x:1").target == "x:1"
    assert ConnectConfig.from_env({}).target == "127.0.0.1:8080"
    with pytest.raises(ValueError, match="SWITCHBOARD_TIMEOUT_S"):
        ConnectConfig.from_env({"SWITCHBOARD_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="timeout_s"):
        ConnectConfig(timeout_s=0)


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def test_cli_parses_chat_and_history() -> None:
    args = parse("chat", "--message", "hi", "--session", "s1", "--verbose", "--json")
    assert (args.message, args.session, args.verbose, args.json) == ("hi", "s1", True, True)
    assert args.target is None
    history = parse("history", "--session", "s1", "--target", "127.0.0.1:1")
    assert history.target == "127.0.0.1:1"
    with pytest.raises(SystemExit):
        parse("history")


def test_verbose_render_shows_intent_sources_degradations_and_timings() -> None:
    response = pb.ChatResponse(
        reply="Here you go [kb#0]",
        intent=pb.IntentSummary(intent="qa/factoid", confidence=0.81),
        sources=[pb.ContextSource(kind=pb.SOURCE_KIND_KNOWLEDGE, id="kb#0", cited=True)],
        degraded=[pb.Degradation(dependency=pb.DEPENDENCY_MEMORY, reason="UNAVAILABLE")],
        timings=[pb.StageTiming(stage=pb.STAGE_CLASSIFY, duration_ms=1.25)],
        total_ms=3.0,
    )
    plain = render(response, verbose=False)
    assert plain == "Here you go [kb#0]"
    text = render(response, verbose=True)
    assert "intent: qa/factoid confidence=0.81" in text
    assert "source: knowledge kb#0 relevance=0.00 *cited*" in text
    assert "degraded: memory (UNAVAILABLE)" in text
    assert "classify=1.2ms" in text
