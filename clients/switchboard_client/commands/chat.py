"""``switchboard chat`` and ``switchboard history``: talk to the mesh from a terminal.

``chat`` sends one message (``--message``) or opens an interactive prompt; ``--verbose``
adds intent, confidence, sources, degradations and timings; ``--json`` prints each
response in the protobuf JSON mapping. ``history`` prints a session's turns.
The target is ``--target``, else ``SWITCHBOARD_TARGET``, else the local edge 127.0.0.1:8080.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any, TextIO

from google.protobuf import json_format

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client._config import DEFAULT_TARGET, TARGET_ENV, ConnectConfig
from switchboard_client._errors import EdgeReason, SwitchboardError
from switchboard_client._orchestration import OrchestrationClient
from switchboard_client.cli import Subparsers

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
QUIT_WORDS = frozenset({"/quit", "/exit", "quit", "exit"})


def register(subparsers: Subparsers) -> None:
    chat = subparsers.add_parser("chat", help="Chat with the assistant through the mesh.")
    chat.add_argument(
        "--message", "-m", metavar="TEXT", help="Send one message and exit (else: interactive)."
    )
    chat.add_argument("--session", metavar="ID", help="Session id (default: a new random one).")
    chat.add_argument(
        "--request-id",
        metavar="UUID",
        help="Idempotency key of the --message turn (default: a new UUID, printed on failure); "
        "run the command again with the same key to retry without a second turn.",
    )
    chat.add_argument("--verbose", "-v", action="store_true", help="Show intent and timings.")
    chat.add_argument("--json", action="store_true", help="Print the full response as JSON.")
    _common(chat)
    chat.set_defaults(func=run_chat)
    history = subparsers.add_parser("history", help="Print the turns of a session.")
    history.add_argument("--session", metavar="ID", required=True, help="Session id.")
    history.add_argument("--json", action="store_true", help="Print the turns as JSON.")
    _common(history)
    history.set_defaults(func=run_history)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        metavar="HOST:PORT",
        help=f"host:port of the edge or orchestration service "
        f"(default: ${TARGET_ENV} or {DEFAULT_TARGET}).",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="Deadline per call in seconds."
    )


def _config(args: argparse.Namespace) -> ConnectConfig:
    return ConnectConfig.from_env(target=args.target, timeout_s=args.timeout)


def _to_json(message: Any) -> str:
    return json_format.MessageToJson(message, indent=2)


def render(response: pb.ChatResponse, *, verbose: bool) -> str:
    """The reply, and with ``verbose`` what the pipeline did."""
    lines = [response.reply]
    if verbose:
        intent = response.intent
        flags = " (out of scope)" if intent.out_of_scope else ""
        flags += " (fallback)" if intent.fallback else ""
        lines.append(f"  intent: {intent.intent} confidence={intent.confidence:.2f}{flags}")
        for alt in intent.alternatives:
            lines.append(f"    alt: {alt.intent} {alt.confidence:.2f}")
        for src in response.sources:
            kind = pb.SourceKind.Name(src.kind).removeprefix("SOURCE_KIND_").lower()
            mark = " *cited*" if src.cited else ""
            lines.append(f"  source: {kind} {src.id} relevance={src.relevance:.2f}{mark}")
        for item in response.degraded:
            dep = pb.Dependency.Name(item.dependency).removeprefix("DEPENDENCY_").lower()
            lines.append(f"  degraded: {dep} ({item.reason})")
        stages = " ".join(
            f"{pb.Stage.Name(t.stage).removeprefix('STAGE_').lower()}={t.duration_ms:.1f}ms"
            for t in response.timings
        )
        lines.append(f"  timings: {stages} total={response.total_ms:.1f}ms")
        lines.append(
            f"  session: {response.session_id} turn={response.turn_index} "
            f"correlation_id={response.correlation_id}"
        )
    return "\n".join(lines)


def _error(exc: SwitchboardError, err: TextIO) -> int:
    print(f"error: {exc}", file=err)
    if exc.reason in (EdgeReason.TOKEN_MISSING, EdgeReason.TOKEN_EXPIRED):
        print(
            "the edge wants a token: run `switchboard up` here (it mints one), or set "
            "SWITCHBOARD_TOKEN / SWITCHBOARD_TOKEN_FILE",
            file=err,
        )
    if exc.correlation_id:
        print(f"correlation_id: {exc.correlation_id}", file=err)
    return EXIT_FAILED


async def _chat(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    session = args.session or f"cli-{uuid.uuid4().hex[:12]}"
    async with OrchestrationClient(_config(args)) as client:

        async def turn(message: str, request_id: str | None = None) -> int:
            key = request_id or str(uuid.uuid4())
            try:
                response = await client.chat(message, session_id=session, request_id=key)
            except SwitchboardError as exc:
                print(f"request_id: {key} (retry with --request-id {key})", file=err)
                return _error(exc, err)
            out.write(_to_json(response) if args.json else render(response, verbose=args.verbose))
            out.write("\n")
            out.flush()
            return EXIT_OK

        if args.message is not None:
            return await turn(args.message, args.request_id)
        print(f"session {session}; /quit to leave", file=err)
        code = EXIT_OK
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                return code
            if line.strip() in QUIT_WORDS:
                return code
            if line.strip():
                code = await turn(line)


async def _history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with OrchestrationClient(_config(args)) as client:
        try:
            turns = [t async for t in client.iter_conversation(args.session)]
        except SwitchboardError as exc:
            return _error(exc, err)
    if args.json:
        payload = {
            "sessionId": args.session,
            "turns": [json_format.MessageToDict(t) for t in turns],
        }
        out.write(json.dumps(payload, indent=2) + "\n")
        return EXIT_OK
    for t in turns:
        when = t.timestamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"[{t.index}] {when} you: {t.user_message}\n")
        out.write(f"    assistant ({t.intent.intent}): {t.reply}\n")
    if not turns:
        print(f"no turns for session {args.session}", file=err)
    return EXIT_OK


def run_chat(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_chat(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run_history(args: argparse.Namespace) -> int:
    return asyncio.run(_history(args, sys.stdout, sys.stderr))
