"""After a scenario: is every acknowledged turn in its session exactly once, and no
failed turn at all?

The rule audited: a turn the client saw succeed (OK) must be in its session's
conversation log exactly once (else *lost* or *doubled*). A turn the client saw fail
must not be there, unless the server committed it before the caller's deadline ran out;
then a resend with the same request_id must answer with that committed turn (same
turn_index) and leave the log unchanged (*failed_committed* counts those, and
*failed_committed_unresolved* those whose resend did not). Anything found twice is
*doubled*, whatever the client saw.

Context memory is audited by count: each recorded turn appends one episodic entry to
its session's memory, so a session's episodic count must not exceed its recorded turns
(*memory_doubled*: an AppendMemory replayed) and falls short of them only by turns
whose memory write the reply flagged as failed (*memory_missing* counts the rest: a
memory write lost although the turn said it was not degraded).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from scripts.chaos.load import OK, Turn
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client import SwitchboardError

READ_TIMEOUT_S = 10.0


class Conversations(Protocol):
    """What the audit needs of an :class:`~switchboard_client.OrchestrationClient`."""

    def iter_conversation(
        self, session_id: str, *, page_size: int = 0, timeout_s: float | None = None
    ) -> AsyncIterator[pb.Turn]: ...

    async def chat(
        self, message: str, *, session_id: str, timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> pb.ChatResponse: ...  # fmt: skip


class MemoryStats(Protocol):
    """What the memory audit needs of a :class:`~switchboard_client.ContextClient`."""

    async def get_memory_stats(
        self, session_id: str, *, timeout_s: float | None = None
    ) -> ctx_pb.MemoryStats: ...


@dataclass
class Audit:
    acknowledged: int = 0
    failed: int = 0
    lost: int = 0
    doubled: int = 0
    failed_committed: int = 0
    failed_committed_unresolved: int = 0
    misplaced: int = 0  # acknowledged, but at another turn_index than the reply said
    memory_doubled: int = 0
    memory_missing: int = 0


async def _log(client: Conversations, session_id: str) -> list[tuple[int, str]]:
    return [
        (turn.index, turn.user_message)
        async for turn in client.iter_conversation(
            session_id, page_size=100, timeout_s=READ_TIMEOUT_S
        )
    ]


async def audit(
    client: Conversations, turns: list[Turn], memory: MemoryStats | None = None
) -> Audit:
    result = Audit()
    by_session: dict[str, list[Turn]] = {}
    for turn in turns:
        by_session.setdefault(turn.session_id, []).append(turn)
    for session_id, sent in by_session.items():
        log = await _log(client, session_id)
        counts = Counter(message for _, message in log)
        index_of = {message: index for index, message in log}
        for turn in sent:
            found = counts.get(turn.message, 0)
            if turn.code == OK:
                result.acknowledged += 1
                result.lost += int(found == 0)
                result.misplaced += int(found == 1 and index_of[turn.message] != turn.turn_index)
                continue
            result.failed += 1
            if found == 1:
                result.failed_committed += 1
                resolved = await _resend(client, turn, index_of[turn.message])
                result.failed_committed_unresolved += int(not resolved)
        # doubled: counted on the log as it is after the resends
        final = Counter(message for _, message in await _log(client, session_id))
        result.doubled += sum(1 for turn in sent if final.get(turn.message, 0) > 1)
        if memory is not None:
            stats = await memory.get_memory_stats(session_id, timeout_s=READ_TIMEOUT_S)
            recorded = sum(final.values())
            flagged = sum(1 for t in sent if t.memory_degraded)
            result.memory_doubled += max(0, stats.episodic_count - recorded)
            result.memory_missing += max(0, recorded - flagged - stats.episodic_count)
    return result


async def _resend(client: Conversations, turn: Turn, index: int) -> bool:
    """Resend a failed turn with its key: the committed turn must come back, once."""
    try:
        response = await client.chat(
            turn.message,
            session_id=turn.session_id,
            request_id=turn.request_id,
            timeout_s=READ_TIMEOUT_S,
        )
    except SwitchboardError:
        return False
    return response.turn_index == index


async def committed(client: Conversations, turns: list[Turn]) -> int:
    """How many of ``turns`` are in their sessions' logs (e.g. failed, yet committed)."""
    found = 0
    for session_id in {t.session_id for t in turns}:
        messages = {message for _, message in await _log(client, session_id)}
        found += sum(1 for t in turns if t.session_id == session_id and t.message in messages)
    return found
