"""Proto <-> domain translation of the orchestration service (used by the servicer only)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.orchestration.v1 import orchestration_service_pb2 as pb
from switchboard_server.orchestration.values import (
    ChatResult,
    Intent,
    StageEvent,
    Turn,
)


def intent_to_proto(intent: Intent) -> pb.IntentSummary:
    return pb.IntentSummary(
        intent=intent.intent,
        confidence=intent.confidence,
        out_of_scope=intent.out_of_scope,
        l1=intent.l1,
        alternatives=[
            pb.IntentAlternative(intent=a.intent, confidence=a.confidence)
            for a in intent.alternatives
        ],
        fallback=intent.fallback,
    )


def result_to_proto(result: ChatResult) -> pb.ChatResponse:
    return pb.ChatResponse(
        reply=result.reply,
        intent=intent_to_proto(result.intent),
        sources=[
            pb.ContextSource(
                kind=int(s.kind),  # type: ignore[arg-type]
                id=s.id,
                title=s.title,
                relevance=s.relevance,
                cited=s.id in result.cited,
                content=s.content,
            )
            for s in result.sources
        ],
        degraded=[
            pb.Degradation(dependency=int(d.dependency), reason=d.reason)  # type: ignore[arg-type]
            for d in result.degraded
        ],
        timings=[
            pb.StageTiming(stage=int(t.stage), duration_ms=t.duration_ms)  # type: ignore[arg-type]
            for t in result.timings
        ],
        correlation_id=result.correlation_id,
        session_id=result.session_id,
        turn_index=result.turn_index,
        total_ms=result.total_ms,
    )


def event_to_proto(event: StageEvent) -> pb.ChatStreamResponse:
    return pb.ChatStreamResponse(
        stage=pb.StageEvent(
            stage=int(event.stage),  # type: ignore[arg-type]
            status=int(event.status),  # type: ignore[arg-type]
            elapsed_ms=event.elapsed_ms,
            duration_ms=event.duration_ms,
        )
    )


def turn_to_proto(turn: Turn) -> pb.Turn:
    timestamp = Timestamp()
    timestamp.FromDatetime(turn.timestamp)
    return pb.Turn(
        index=turn.index,
        user_message=turn.user_message,
        reply=turn.reply,
        intent=intent_to_proto(turn.intent),
        timestamp=timestamp,
        correlation_id=turn.correlation_id,
    )


def chunks(text: str, size: int) -> list[str]:
    """Split ``text`` at spaces into pieces of about ``size`` characters; joined they give it."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            space = text.rfind(" ", start + 1, end + 1)
            end = space + 1 if space > start else end
        pieces.append(text[start:end])
        start = end
    return pieces
