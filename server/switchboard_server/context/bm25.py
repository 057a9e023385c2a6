"""BM25 with scores normalised to [0, 1].

A raw BM25 score depends on the corpus, so it is divided by the best score the
query could reach in that corpus (every term saturated)::

    relevance = sum_t idf(t) * tf(t)*(k1+1) / (tf(t) + k1*(1-b+b*dl/avgdl))
                / sum_t idf(t) * (k1+1)

i.e. the share of the query's weight a text matches. Two idf variants:

* ``fts5_idf`` is SQLite FTS5's (``ln((N-n+0.5)/(n+0.5))``, floored at 1e-6): the
  knowledge base uses it in both backends, so Redis ranks like SQLite's ``bm25()``.
* ``smooth_idf`` (``ln(1+(N-n+0.5)/(n+0.5))``, always positive) is used for the
  handful of memory entries of one session, where the FTS5 variant would zero a term
  found in most entries.

k1 and b are FTS5's fixed values so that both backends agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

K1 = 1.2
B = 0.75
FTS5_MIN_IDF = 1e-6

Idf = Callable[[int, int], float]
K = TypeVar("K", bound=Hashable)


def fts5_idf(total: int, containing: int) -> float:
    """SQLite FTS5's idf for a corpus of ``total`` texts, ``containing`` of which match."""
    value = math.log((total - containing + 0.5) / (containing + 0.5))
    return max(value, FTS5_MIN_IDF)


def smooth_idf(total: int, containing: int) -> float:
    """Always-positive idf for small corpora."""
    return math.log(1.0 + (total - containing + 0.5) / (containing + 0.5))


def length_norm(length: float, avg_length: float) -> float:
    """BM25's length normalisation of a text of ``length`` terms: 1 - b + b*dl/avgdl."""
    return 1.0 - B + B * (length / avg_length if avg_length > 0 else 1.0)


def saturated(tf: float, norm: float) -> float:
    """The tf part of BM25 for a text of ``length_norm`` ``norm``, in [0, k1+1)."""
    if tf <= 0:
        return 0.0
    return tf * (K1 + 1.0) / (tf + K1 * norm)


def saturation(tf: float, length: float, avg_length: float) -> float:
    """The tf part of BM25, in [0, k1+1)."""
    return saturated(tf, length_norm(length, avg_length))


def max_score(idfs: Sequence[float]) -> float:
    """The score of a text that saturates every query term."""
    return sum(idfs) * (K1 + 1.0)


def share(score: float, top: float) -> float:
    """``score`` as a share of ``top`` (a ``max_score``), clamped to [0, 1]."""
    if top <= 0:
        return 0.0
    return min(1.0, max(0.0, score / top))


def normalise(score: float, idfs: Sequence[float]) -> float:
    """``score`` as a share of ``max_score(idfs)``, clamped to [0, 1]."""
    return share(score, max_score(idfs))


class Corpus:
    """BM25 over an in-memory set of texts given as term lists (e.g. one session's memory).

    Only the query's terms are counted, so scoring is cheap for short queries.
    """

    def __init__(self, documents: Mapping[str, Sequence[str]], idf: Idf = smooth_idf) -> None:
        self._documents = documents
        total_length = sum(len(terms) for terms in documents.values())
        self._avg = total_length / len(documents) if documents else 0.0
        self._idf = idf

    def relevance(self, query: Sequence[str]) -> dict[str, float]:
        """Normalised relevance of every text that matches at least one query term."""
        total = len(self._documents)
        wanted = set(query)
        # texts with no query term score 0 and add nothing to any df: skip them early
        tfs = {
            key: [terms.count(t) for t in query]
            for key, terms in self._documents.items()
            if not wanted.isdisjoint(terms)
        }
        df = [sum(1 for counts in tfs.values() if counts[i]) for i in range(len(query))]
        idfs = [self._idf(total, n) for n in df]
        top = max_score(idfs)
        avg = self._avg
        result: dict[str, float] = {}
        for key, counts in tfs.items():
            norm = length_norm(len(self._documents[key]), avg)  # once per text, not per term
            score = 0.0
            for tf, weight in zip(counts, idfs, strict=True):
                if tf > 0:
                    score += weight * saturated(tf, norm)
            if score > 0:
                result[key] = share(score, top)
        return result


def raw_scores(
    query: Sequence[str],
    document_frequency: Mapping[str, int],
    total: int,
    average_length: float,
    candidates: Mapping[K, tuple[int, Mapping[str, int]]],
    idf: Idf = fts5_idf,
) -> dict[K, float]:
    """BM25 of candidates given as ``id -> (length, {term: tf})`` (only those above 0).

    Corpus statistics (``total`` texts, their ``average_length`` and each term's
    ``document_frequency``) describe the whole corpus, not only the candidates.
    """
    idfs = [idf(total, document_frequency.get(term, 0)) for term in query]
    return _scores(query, idfs, average_length, candidates)


def score_candidates(
    query: Sequence[str],
    document_frequency: Mapping[str, int],
    total: int,
    average_length: float,
    candidates: Mapping[K, tuple[int, Mapping[str, int]]],
    idf: Idf = fts5_idf,
) -> dict[K, float]:
    """Like ``raw_scores`` but normalised to [0, 1]."""
    idfs = [idf(total, document_frequency.get(term, 0)) for term in query]
    raw = _scores(query, idfs, average_length, candidates)
    return {key: normalise(score, idfs) for key, score in raw.items()}


def _scores(
    query: Sequence[str],
    idfs: Sequence[float],
    average_length: float,
    candidates: Mapping[K, tuple[int, Mapping[str, int]]],
) -> dict[K, float]:
    result: dict[K, float] = {}
    for key, (length, tfs) in candidates.items():
        score = sum(
            weight * saturation(tfs.get(term, 0), length, average_length)
            for term, weight in zip(query, idfs, strict=True)
        )
        if score > 0:
            result[key] = score
    return result
