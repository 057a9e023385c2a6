"""BM25 normalisation: scores in [0, 1], comparable, ordered as BM25 orders them."""

from __future__ import annotations

import math

import numpy as np

from switchboard_server.context.bm25 import (
    K1,
    Corpus,
    fieldnorm_table,
    fts5_idf,
    quantized_lengths,
    saturation,
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


def test_fieldnorms_are_tantivys_one_byte_lengths() -> None:
    table = fieldnorm_table()
    assert len(table) == 256
    assert list(table[:41]) == list(range(41))
    assert list(table[41:58]) == [
        42,
        44,
        46,
        48,
        50,
        52,
        54,
        56,
        60,
        64,
        68,
        72,
        76,
        80,
        84,
        88,
        96,
    ]
    assert list(quantized_lengths(np.array([0, 40, 41, 59, 60, 130]))) == [0, 40, 40, 56, 60, 128]
