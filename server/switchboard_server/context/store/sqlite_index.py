"""The SQLite backend's knowledge ranking in memory: postings lists cached as arrays.

The ``postings`` table stays the truth (written in each passage's transaction).
``PostingsCache`` keeps, for every term a query used, that term's rows as numpy
arrays (passage rowids ascending, tf, passage length) and the corpus totals of
``kb_stats``, so a query is ranked without SQL. After a knowledge write commits, the
store drops the terms it touched and the totals (``invalidate``); a load that
overlapped a write answers its own query but is not kept (``version``), so nothing
older than the last committed write is ever served from the cache. It holds at most
what the postings table holds, once.

``best_passages`` ranks exactly as the SQL it replaced: each row scores
idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avgdl)) with FTS5's idf, and
a passage's rows are summed term by term in ascending term order from 0.0, which is
the order SQLite summed them in, so scores (and hence ties) are the same doubles.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from switchboard_server.context import bm25

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


class Postings:
    """One term's rows: passages (rowids, ascending), tf and passage length, and
    their BM25 for the last (idf, average length) asked, which only change with the
    corpus."""

    __slots__ = ("_scored", "length", "passages", "tf")

    def __init__(self, passages: Ints, tf: Ints, length: Ints) -> None:
        self.passages = passages
        self.tf = tf
        self.length = length
        self._scored: tuple[float, float, Floats] | None = None

    def __len__(self) -> int:
        return len(self.passages)

    def scores(self, idf: float, average: float) -> Floats:
        """BM25 of each row, with the operations in the order the SQL had them."""
        if self._scored is None or self._scored[:2] != (idf, average):
            k1, b = bm25.K1, bm25.B
            tf, length = self.tf, self.length
            values = idf * tf * (k1 + 1.0) / (tf + k1 * ((1.0 - b) + b * length / average))
            self._scored = (idf, average, values)
        return self._scored[2]


@dataclass(frozen=True, slots=True)
class Totals:
    """Passages in the knowledge base and the sum of their lengths (``kb_stats``)."""

    passages: int
    terms: int


class PostingsCache:
    """Postings lists and totals read from the database, dropped when a write touches them.

    Lists of terms with no postings are not kept: queries can bring any word.
    """

    def __init__(self) -> None:
        self._lists: dict[str, Postings] = {}
        self._totals: Totals | None = None
        self.version = 0  # bumped by every invalidation

    def cached(self, terms: Iterable[str]) -> tuple[Totals | None, dict[str, Postings], list[str]]:
        """(totals, the cached lists of ``terms``, the terms still to load)."""
        found: dict[str, Postings] = {}
        missing: list[str] = []
        for term in terms:
            postings = self._lists.get(term)
            if postings is None:
                missing.append(term)
            else:
                found[term] = postings
        return self._totals, found, missing

    def keep(self, version: int, totals: Totals, loaded: Mapping[str, Postings]) -> None:
        """Remember what a load started at ``version`` read, unless a write came since."""
        if version != self.version:
            return
        self._totals = totals
        self._lists.update((term, p) for term, p in loaded.items() if len(p))

    def invalidate(self, terms: Iterable[str] | None) -> None:
        """Drop the totals and ``terms`` (every list when None) after a write committed."""
        self.version += 1
        self._totals = None
        if terms is None:
            self._lists.clear()
        else:
            for term in terms:
                self._lists.pop(term, None)


def load(conn: sqlite3.Connection, terms: Collection[str]) -> tuple[Totals, dict[str, Postings]]:
    """The totals and the postings of ``terms`` (empty lists for unknown terms)."""
    total, words = conn.execute("SELECT passages, terms FROM kb_stats").fetchone()
    lists = {term: _EMPTY for term in terms}
    if terms:
        rows = conn.execute(
            "SELECT term, passage, tf, length FROM postings"
            f" WHERE term IN ({','.join('?' * len(terms))}) ORDER BY term, passage",
            tuple(terms),
        ).fetchall()
        if rows:
            columns = np.array([r[1:] for r in rows], dtype=np.int64).T
            start = 0
            for end in range(1, len(rows) + 1):
                if end == len(rows) or rows[end][0] != rows[start][0]:
                    passages, tf, length = columns[:, start:end].copy()
                    lists[rows[start][0]] = Postings(passages, tf, length)
                    start = end
    return Totals(int(total), int(words)), lists


_EMPTY = Postings(*(np.zeros(0, dtype=np.int64) for _ in range(3)))


def best_passages(
    lists: Mapping[str, Postings],
    totals: Totals,
    query: Sequence[str],
    limit: int,
    budget: int,
) -> list[tuple[int, float]]:
    """The ``limit`` best (rowid, BM25) of the query, best first, ties by rowid.

    Terms in more than half the passages have FTS5's floor idf (they add nothing)
    and are left out, unless the query has no other term. Candidates come from the
    rarest terms whose postings fit in ``budget`` rows (at most ``2 * limit``, 16 or
    more); when a term was left out of that match, each candidate is rescored with
    the full query, so scores are exact BM25 and only the candidate set is
    approximate.
    """
    df = {term: len(lists[term]) for term in dict.fromkeys(query) if term in lists}
    present = sorted((t for t in df if df[t] > 0), key=df.__getitem__)
    if not present or totals.passages <= 0:
        return []
    idf = {t: bm25.fts5_idf(totals.passages, df[t]) for t in present}
    useful = [t for t in present if idf[t] > bm25.FTS5_MIN_IDF] or present
    selective, rows = [useful[0]], df[useful[0]]
    for term in useful[1:]:
        if rows + df[term] > budget:
            break
        selective.append(term)
        rows += df[term]
    average = totals.terms / totals.passages
    passages, scores = _summed([(lists[t], idf[t]) for t in sorted(selective)], average)
    top = _top(passages, scores, max(limit * 2, 16))
    passages, scores = passages[top], scores[top]
    if len(selective) < len(useful):  # rescore with every term: exact BM25
        scores = _rescored([(lists[t], idf[t]) for t in sorted(useful)], average, passages)
        top = _top(passages, scores, limit)
        passages, scores = passages[top], scores[top]
    return list(zip(passages[:limit].tolist(), scores[:limit].tolist(), strict=True))


def _summed(terms: Sequence[tuple[Postings, float]], average: float) -> tuple[Ints, Floats]:
    """Every passage with any of the terms and its score, summed in ``terms`` order."""
    if len(terms) == 1:
        postings, idf = terms[0]
        return postings.passages, postings.scores(idf, average)
    passages = np.concatenate([p.passages for p, _ in terms])
    values = np.concatenate([p.scores(idf, average) for p, idf in terms])
    unique, inverse = np.unique(passages, return_inverse=True)
    # bincount adds the weights one after the other in array order, from 0.0
    summed = np.bincount(inverse, weights=values, minlength=len(unique))
    return unique, summed.astype(np.float64, copy=False)


def _rescored(terms: Sequence[tuple[Postings, float]], average: float, passages: Ints) -> Floats:
    """Scores of ``passages`` with every term, summed in ``terms`` order."""
    scores = np.zeros(len(passages), dtype=np.float64)
    for postings, idf in terms:
        where = np.searchsorted(postings.passages, passages)
        where[where == len(postings)] = 0
        hit = postings.passages[where] == passages
        scores[hit] += postings.scores(idf, average)[where[hit]]
    return scores


def _top(passages: Ints, scores: Floats, count: int) -> Ints:
    """Indexes of the ``count`` best: score descending, then rowid ascending."""
    chosen: Ints = np.arange(len(scores))
    if len(scores) > count:
        cutoff = np.partition(scores, len(scores) - count)[len(scores) - count]
        chosen = np.flatnonzero(scores >= cutoff)
    order = np.lexsort((passages[chosen], -scores[chosen]))
    return chosen[order[:count]]  # type: ignore[no-any-return]
