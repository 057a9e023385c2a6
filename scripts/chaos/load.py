"""The chaos suite's load: ``switchboard load``'s open-loop engine sending Chats through
the typed client, each with a request_id the suite chooses and a message unique to the
turn, so the audit can find every turn in its session afterwards."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_client import ConnectConfig, OrchestrationClient, SwitchboardError
from switchboard_client.loadgen import LoadPlan, Outcome, Shot

OK = "OK"


@dataclass
class Turn:
    """One Chat the suite sent: what it asked, under which key, and what came back."""

    seq: int
    session_id: str
    message: str
    request_id: str
    offset_s: float  # scheduled start, seconds after the run's start
    code: str = ""
    degraded: bool = False
    memory_degraded: bool = False  # the reply said its memory write failed
    degraded_by: tuple[str, ...] = ()  # DEPENDENCY:REASON of each degradation
    turn_index: int = -1
    latency_s: float = 0.0


@dataclass
class TurnLog:
    """``send(shot, timeout_s)`` for ``run_load`` that remembers every turn."""

    client: OrchestrationClient
    run: str
    turns: list[Turn] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    async def send(self, shot: Shot, timeout_s: float) -> Outcome:
        turn = Turn(
            seq=shot.seq,
            session_id=shot.session_id,
            message=f"{shot.message} [{self.run}#{shot.seq}]",
            request_id=str(uuid.uuid4()),
            offset_s=shot.offset_s,
        )
        self.turns.append(turn)
        try:
            response = await self.client.chat(
                turn.message,
                session_id=turn.session_id,
                timeout_s=timeout_s,
                request_id=turn.request_id,
            )
        except SwitchboardError as exc:
            turn.code = exc.code.name
        else:
            mark(turn, response)
        # latency from the scheduled start, as run_load counts it
        turn.latency_s = time.monotonic() - self.started - shot.offset_s
        return Outcome(turn.code, degraded=turn.degraded)


def mark(turn: Turn, response: pb.ChatResponse) -> None:
    """An OK reply's turn_index and degradations onto ``turn``."""
    turn.code = OK
    turn.turn_index = response.turn_index
    turn.degraded = len(response.degraded) > 0
    turn.degraded_by = tuple(
        f"{pb.Dependency.Name(d.dependency)}:{d.reason}" for d in response.degraded
    )
    turn.memory_degraded = any(d.dependency == pb.DEPENDENCY_MEMORY for d in response.degraded)


def plan(rate: float, duration_s: float, sessions: int, run: str, timeout_s: float) -> LoadPlan:
    return LoadPlan(
        rate=rate,
        duration_s=duration_s,
        concurrency=256,
        sessions=sessions,
        timeout_s=timeout_s,
        session_prefix=f"chaos-{run}",
    )


def connect(target: str, timeout_s: float) -> OrchestrationClient:
    return OrchestrationClient(ConnectConfig(target, timeout_s=timeout_s))
