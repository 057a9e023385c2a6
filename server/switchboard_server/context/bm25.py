"""BM25 with scores normalised to [0, 1].

A raw BM25 score depends on the corpus, so it is divided by the best score the
query could reach in that corpus (every term saturated)::

    relevance = sum_t idf(t) * tf(t)*(k1+1) / (tf(t) + k1*(1-b+b*dl/avgdl))
                / sum_t idf(t) * (k1+1)

i.e. the share of the query's weight a text matches. ``Corpus`` ranks the handful of
memory entries of one session this way with ``smooth_idf``
(``ln(1+(N-n+0.5)/(n+0.5))``, always positive), k1 = 1.2 and b = 0.75: the formula
the knowledge index (tantivy, Lucene) uses too. ``fts5_idf`` is SQLite FTS5's.

``exhaustive_top`` scores every passage of a corpus with tantivy's exact BM25 (its
fieldnorm quantization included): the reference the benchmark's recall and the
index tests compare the index against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy only for the exhaustive reference scorer, imported when it runs
    import numpy as np
    import numpy.typing as npt

K1 = 1.2
B = 0.75
FTS5_MIN_IDF = 1e-6

Idf = Callable[[int, int], float]


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


def fieldnorm_table() -> npt.NDArray[np.float64]:
    """tantivy's (and Lucene's) one-byte document lengths: code -> length. Lengths up
    to 40 are exact; then each run of 8 codes doubles its step (42, 44, .., 56, 60, ..)."""
    values = list(range(41))
    step = 2
    while len(values) < 256:
        for _ in range(8):
            if len(values) < 256:
                values.append(values[-1] + step)
        step *= 2
    import numpy as np  # the reference scorer's: not on the service's path

    return np.array(values, dtype=np.float64)


def quantized_lengths(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Each length as tantivy stores it: the largest table value not above it."""
    import numpy as np  # the reference scorer's: not on the service's path

    table = fieldnorm_table()
    return table[np.searchsorted(table, lengths, side="right") - 1]


def exhaustive_top(
    query: Sequence[int],
    postings: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    lengths: npt.NDArray[np.int64],
    limit: int,
    *,
    quantize: bool = True,
    idf: Idf = smooth_idf,
) -> list[tuple[int, float]]:
    """The ``limit`` best (passage, BM25) of ``query`` (distinct term ids) over every
    passage, best first: ``postings[t]`` is term t's (passages, tf), ``lengths`` each
    passage's term count. With ``quantize`` the lengths are tantivy's one-byte codes
    while avgdl stays the exact mean (as tantivy does)."""
    import numpy as np  # the reference scorer's: not on the service's path

    total = len(lengths)
    average = float(lengths.sum()) / total if total else 0.0
    dl = quantized_lengths(lengths) if quantize else lengths.astype(np.float64)
    norm = K1 * (1.0 - B + B * dl / average) if average else np.full(total, K1)
    scores = np.zeros(total, dtype=np.float64)
    for term in query:
        passages, tf = postings[term]
        if not len(passages):
            continue
        weight = idf(total, len(passages)) * (K1 + 1.0)
        scores[passages] += weight * tf / (tf + norm[passages])
    matched = np.flatnonzero(scores > 0)
    if len(matched) > limit:
        matched = matched[np.argpartition(-scores[matched], limit - 1)[:limit]]
    order = matched[np.lexsort((matched, -scores[matched]))]
    return [(int(p), float(scores[p])) for p in order[:limit]]
