"""BM25 normalisation: scores in [0, 1], comparable, ordered as BM25 orders them."""

from __future__ import annotations

import math

from switchboard_server.context.bm25 import (
    K1,
    Corpus,
    fts5_idf,
    saturation,
    score_candidates,
    smooth_idf,
)


def test_idf_variants() -> None:
    assert fts5_idf(10, 1) == math.log(9.5 / 1.5)
    assert fts5_idf(10, 9) == 1e-6  # FTS5 floors common terms
    assert smooth_idf(1, 1) > 0  # memory of one entry still scores


def test_relevance_is_a_share_of_the_query_weight() -> None:
    corpus = Corpus({"a": ["dog", "name", "biscuit"], "b": ["city", "lisbon"], "c": ["dog"]})
    scores = corpus.relevance(["dog", "name"])
    assert set(scores) == {"a", "c"}
    assert 0 < scores["c"] < scores["a"] < 1
    assert corpus.relevance(["unknown"]) == {}


def test_saturation_is_bounded() -> None:
    assert saturation(0, 10, 10) == 0
    assert saturation(1000, 10, 10) < K1 + 1


def test_candidates_score_like_corpus_with_the_same_idf() -> None:
    docs = {"a": ["x", "y", "y"], "b": ["y"], "c": ["z"]}
    expected = Corpus(docs, idf=fts5_idf).relevance(["x", "y"])
    got = score_candidates(
        ["x", "y"],
        {"x": 1, "y": 2},
        3,
        sum(map(len, docs.values())) / 3,
        {k: (len(v), {t: v.count(t) for t in ("x", "y")}) for k, v in docs.items()},
    )
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[k], expected[k]) for k in got)
