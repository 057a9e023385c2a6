"""Reciprocal rank fusion and the relevance scale of fused passages."""

from __future__ import annotations

import pytest

from switchboard_server.context.hybrid import on_lexical_scale, reciprocal_rank_fusion
from switchboard_server.context.knowledge_index import ScoredPassage


def test_rrf_sums_reciprocal_ranks_with_k() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60, limit=10)
    scores = {p.passage_id: p.relevance * 2 / 61 for p in fused}
    assert [p.passage_id for p in fused] == ["a", "c", "b", "d"]
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert fused[0].relevance <= 1
    assert [p.passage_id for p in reciprocal_rank_fusion([["x", "y"], []], 60, 1)] == ["x"]


def sp(*pairs: tuple[str, float]) -> list[ScoredPassage]:
    return [ScoredPassage(i, r) for i, r in pairs]


def test_fused_order_takes_the_lexical_relevances_in_turn() -> None:
    fused = sp(("d", 0.03), ("a", 0.02), ("x", 0.01))
    lexical = sp(("a", 0.9), ("d", 0.4))
    dense = sp(("d", 0.8), ("x", 0.7))
    got = on_lexical_scale(fused, lexical, dense)
    assert [(p.passage_id, round(p.relevance, 4)) for p in got] == [
        ("d", 0.9),
        ("a", 0.4),
        ("x", 0.396),
    ]
    only_dense = on_lexical_scale(sp(("x", 0.1)), [], dense)
    assert only_dense == sp(("x", 0.7))


def test_ties_go_to_the_lexical_order() -> None:
    # "rare" alone has the query's word (lexical #1); "near" is dense #1 only: equal RRF
    fused = reciprocal_rank_fusion([["rare"], ["near", "other"]], k=60, limit=3)
    assert [p.passage_id for p in fused] == ["rare", "near", "other"]
    tie = reciprocal_rank_fusion([["b"], ["a"]], k=60, limit=2)
    assert [p.passage_id for p in tie] == ["b", "a"]
