"""Ranking merge and the context block assembled within a character budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from switchboard_server.context.values import Source, SourceKind

SEPARATOR = "\n\n"
ELLIPSIS = "…"


def rank(sources: Sequence[Source], recency: dict[str, int]) -> list[Source]:
    """Best first: relevance, then (memory) the most recent entry, then id."""

    def key(source: Source) -> tuple[float, int, int, str]:
        return (
            -round(source.relevance, 6),
            0 if source.kind is SourceKind.MEMORY else 1,
            -recency.get(source.id, 0),
            source.id,
        )

    return sorted(sources, key=key)


def label(source: Source) -> str:
    """The header of a source inside the block."""
    if source.kind is SourceKind.MEMORY and source.memory_type is not None:
        return f"[memory:{source.memory_type.value}]"
    return f"[knowledge:{source.title}]" if source.title else "[knowledge]"


def assemble(ranked: Sequence[Source], budget: int) -> tuple[str, tuple[Source, ...]]:
    """Join sources best first while the block stays within ``budget`` characters.

    A source that does not fit is skipped (a later, shorter one may still fit);
    when not even the best one fits, it is cut to the budget and ends with an
    ellipsis. Returns the block and the sources it holds, in order.
    """
    parts: list[str] = []
    kept: list[Source] = []
    used = 0
    for source in ranked:
        text = f"{label(source)} {source.content}"
        extra = len(text) + (len(SEPARATOR) if parts else 0)
        if used + extra <= budget:
            parts.append(text)
            kept.append(source)
            used += extra
        elif not parts and budget > len(label(source)) + 1 + len(ELLIPSIS):
            room = budget - len(label(source)) - 1 - len(ELLIPSIS)
            cut = source.content[:room].rstrip() + ELLIPSIS
            parts.append(f"{label(source)} {cut}")
            kept.append(replace(source, content=cut))
            used = len(parts[0])
    return SEPARATOR.join(parts), tuple(kept)
