"""A committed chat turn's answer as JSON: what a repeat of its request_id gets back."""

from __future__ import annotations

import json
from typing import Any

from switchboard_server.orchestration.values import (
    Alternative,
    ChatResult,
    Degradation,
    Dependency,
    Intent,
    Source,
    SourceKind,
    Stage,
    StageTiming,
)


def intent_to_dict(intent: Intent) -> dict[str, Any]:
    return {
        "intent": intent.intent,
        "confidence": intent.confidence,
        "out_of_scope": intent.out_of_scope,
        "l1": intent.l1,
        "alternatives": [[a.intent, a.confidence] for a in intent.alternatives],
        "fallback": intent.fallback,
    }


def intent_from_dict(data: dict[str, Any]) -> Intent:
    return Intent(
        intent=data["intent"],
        confidence=float(data["confidence"]),
        out_of_scope=bool(data["out_of_scope"]),
        l1=data["l1"],
        alternatives=tuple(Alternative(i, float(c)) for i, c in data["alternatives"]),
        fallback=bool(data["fallback"]),
    )


def result_to_json(result: ChatResult) -> str:
    """Every field of the answer, so a replay answers exactly as the first call did."""
    return json.dumps(
        {
            "reply": result.reply,
            "intent": intent_to_dict(result.intent),
            "sources": [
                [int(s.kind), s.id, s.content, s.relevance, s.title, s.metadata]
                for s in result.sources
            ],
            "cited": sorted(result.cited),
            "degraded": [[d.dependency.name, d.reason] for d in result.degraded],
            "timings": [[t.stage.name, t.duration_ms] for t in result.timings],
            "correlation_id": result.correlation_id,
            "session_id": result.session_id,
            "turn_index": result.turn_index,
            "total_ms": result.total_ms,
        },
        separators=(",", ":"),
    )


def result_from_json(text: str) -> ChatResult:
    data = json.loads(text)
    return ChatResult(
        reply=data["reply"],
        intent=intent_from_dict(data["intent"]),
        sources=tuple(
            Source(SourceKind(kind), sid, content, float(relevance), title, dict(metadata))
            for kind, sid, content, relevance, title, metadata in data["sources"]
        ),
        cited=frozenset(data["cited"]),
        degraded=tuple(Degradation(Dependency[d], reason) for d, reason in data["degraded"]),
        timings=tuple(StageTiming(Stage[s], float(ms)) for s, ms in data["timings"]),
        correlation_id=data["correlation_id"],
        session_id=data["session_id"],
        turn_index=int(data["turn_index"]),
        total_ms=float(data["total_ms"]),
        replayed=True,
    )
