"""The chaos suite's audit finds what it is there to find: lost, doubled and committed
failed turns, and whether a resend with the key resolves a committed failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

from scripts.chaos.audit import audit
from scripts.chaos.load import OK, Turn
from switchboard.context.v1 import context_service_pb2 as ctx_pb
from switchboard.orchestration.v1 import orchestration_service_pb2 as pb


class FakeLog:
    """A conversation log; ``chat`` answers a known key with its turn, else appends."""

    def __init__(self, messages: list[str], keys: dict[str, int]) -> None:
        self.messages = messages
        self.keys = keys  # request_id -> index of the committed turn

    async def iter_conversation(
        self, session_id: str, *, page_size: int = 0, timeout_s: float | None = None
    ) -> AsyncIterator[pb.Turn]:
        for index, message in enumerate(self.messages):
            yield pb.Turn(index=index, user_message=message)

    async def chat(
        self,
        message: str,
        *,
        session_id: str,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> pb.ChatResponse:
        if request_id in self.keys:
            return pb.ChatResponse(turn_index=self.keys[request_id])
        self.messages.append(message)
        return pb.ChatResponse(turn_index=len(self.messages) - 1)


def turn(seq: int, code: str = OK, index: int = -1) -> Turn:
    return Turn(seq, "s", f"m{seq}", f"key-{seq}", 0.0, code=code, turn_index=index)


async def test_a_clean_log_passes():
    log = FakeLog(["m0", "m1"], {})
    result = await audit(log, [turn(0, index=0), turn(1, index=1), turn(2, "UNAVAILABLE")])
    assert (result.acknowledged, result.failed, result.lost, result.doubled) == (2, 1, 0, 0)
    assert result.failed_committed == 0


async def test_lost_doubled_and_misplaced_turns_are_counted():
    log = FakeLog(["m1", "m1", "m2"], {})
    result = await audit(log, [turn(0, index=0), turn(1, index=0), turn(2, index=0)])
    assert result.lost == 1  # m0 acknowledged, not in the log
    assert result.doubled == 1  # m1 twice
    assert result.misplaced == 1  # m2 answered as turn 0, logged as turn 2


async def test_a_committed_failure_is_resolved_only_by_its_key():
    resolved = await audit(FakeLog(["m0"], {"key-0": 0}), [turn(0, "DEADLINE_EXCEEDED")])
    assert (resolved.failed_committed, resolved.failed_committed_unresolved) == (1, 0)
    assert resolved.doubled == 0
    # a server that forgot the key writes the turn again on the resend: doubled
    forgot = await audit(FakeLog(["m0"], {}), [turn(0, "DEADLINE_EXCEEDED")])
    assert (forgot.failed_committed_unresolved, forgot.doubled) == (1, 1)


class FakeMemory:
    def __init__(self, episodic: int) -> None:
        self.episodic = episodic

    async def get_memory_stats(
        self, session_id: str, *, timeout_s: float | None = None
    ) -> ctx_pb.MemoryStats:
        return ctx_pb.MemoryStats(episodic_count=self.episodic)


async def test_memory_is_audited_by_count():
    turns = [turn(0, index=0), turn(1, index=1), turn(2, index=2)]
    log = ["m0", "m1", "m2"]
    assert (await audit(FakeLog(list(log), {}), turns, FakeMemory(3))).memory_doubled == 0
    assert (await audit(FakeLog(list(log), {}), turns, FakeMemory(4))).memory_doubled == 1
    assert (await audit(FakeLog(list(log), {}), turns, FakeMemory(2))).memory_missing == 1
    turns[2].memory_degraded = True  # the reply said its memory write failed
    assert (await audit(FakeLog(list(log), {}), turns, FakeMemory(2))).memory_missing == 0
