"""The context block stays within its budget; ranking ties go to the newest memory."""

from __future__ import annotations

from switchboard_server.context.assembly import assemble, rank
from switchboard_server.context.values import MemoryType, Source, SourceKind


def source(i: str, relevance: float, content: str, kind: SourceKind = SourceKind.MEMORY) -> Source:
    memory_type = MemoryType.WORKING if kind is SourceKind.MEMORY else None
    return Source(kind, i, content, relevance, 0.0, {}, memory_type=memory_type, title="T")


def test_budget_skips_what_does_not_fit_but_keeps_smaller_ones() -> None:
    ranked = [source("a", 0.9, "x" * 30), source("b", 0.8, "y" * 500), source("c", 0.7, "z")]
    block, kept = assemble(ranked, 80)
    assert len(block) <= 80
    assert [s.id for s in kept] == ["a", "c"]


def test_a_too_long_best_source_is_cut() -> None:
    block, kept = assemble([source("a", 0.9, "w " * 400)], 100)
    assert len(block) <= 100
    assert kept[0].content.endswith("…")


def test_ties_prefer_recent_memory() -> None:
    ranked = rank(
        [source("old", 0.5, "o"), source("new", 0.5, "n"), source("kb", 0.5, "k",
                                                                   SourceKind.KNOWLEDGE)],
        {"old": 1, "new": 2},
    )  # fmt: skip
    assert [s.id for s in ranked] == ["new", "old", "kb"]
