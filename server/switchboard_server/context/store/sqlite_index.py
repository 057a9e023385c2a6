"""The SQLite backend's knowledge ranking in memory: every postings list as arrays.

The ``postings`` table stays the truth (written in each passage's transaction);
``PostingsIndex`` mirrors it in memory (passage rowids ascending, tf, passage
length per term, about as large as the table) with the corpus totals, so a query is
ranked without SQL. It is read whole when the store opens and kept in step by the
committed writes (see ``PostingsIndex``).

``best_passages`` ranks exactly as the SQL it replaced: each row scores
idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avgdl)) with FTS5's idf, and
a passage's rows are summed term by term in ascending term order from 0.0, which is
the order SQLite summed them in, so scores (and hence ties) are the same doubles.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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


class PostingsIndex:
    """Every term's postings and the totals, kept in step with the committed writes.

    Filled from the database when the store opens (``fill``); each committed write
    reports the passages it removed and added, in order (``apply``), which go to a
    per-term overlay (rowid -> (tf, length), or None once removed) merged into a
    term's arrays when a query needs it, the overlay grew to a quarter of the
    list, or the store compacts the index (``compact``, once writes pause), so a
    bulk ingest costs amortised O(1) per posting and the queries after it do not
    pay for the merges. A write that failed leaves the index ``stale``: the next
    query reads it all again. ``version`` tells a read that overlapped a write
    (with reader threads) not to keep what it read.
    """

    def __init__(self) -> None:
        self._lists: dict[str, Postings] = {}
        self._pending: dict[str, dict[int, tuple[int, int] | None]] = {}
        self._totals = Totals(0, 0)
        self._empty = _postings(np.zeros((3, 0), dtype=np.int64))
        self.stale = True
        self.version = 0

    def fill(self, version: int, totals: Totals, lists: dict[str, Postings]) -> None:
        """Take what a read of the whole table started at ``version`` found, unless a
        write came since."""
        if version == self.version:
            self._lists, self._pending, self._totals = lists, {}, totals
            self.stale = False

    def lookup(self, terms: Iterable[str]) -> tuple[Totals, dict[str, Postings]]:
        """The totals and the postings of ``terms`` (empty for a term in no passage)."""
        found: dict[str, Postings] = {}
        for term in terms:
            if term in self._pending:
                self._merge(term)
            found[term] = self._lists.get(term, self._empty)
        return self._totals, found

    def apply(self, changes: Iterable[tuple[int, Sequence[str], bool]]) -> None:
        """A committed write's passages, in order: (rowid, terms, True when added)."""
        self.version += 1
        if self.stale:
            return
        passages, words = self._totals.passages, self._totals.terms
        touched: set[str] = set()
        for rowid, terms, added in changes:
            sign = 1 if added else -1
            passages, words = passages + sign, words + sign * len(terms)
            for term, tf in Counter(terms).items():
                self._pending.setdefault(term, {})[rowid] = (tf, len(terms)) if added else None
                touched.add(term)
        self._totals = Totals(passages, words)
        for term in touched:
            base = self._lists.get(term)
            if len(self._pending[term]) >= max(64, len(base) // 4 if base else 0):
                self._merge(term)

    def invalidate(self) -> None:
        """After a write whose outcome is unknown: read everything again."""
        self.version += 1
        self.stale = True
        self._lists, self._pending = {}, {}

    @property
    def pending(self) -> int:
        """Terms with committed writes not yet merged into their arrays."""
        return len(self._pending)

    def compact(self, terms: int) -> int:
        """Merge the overlays of up to ``terms`` terms; how many are left to merge."""
        for term in list(itertools.islice(self._pending, terms)):
            self._merge(term)
        return len(self._pending)

    def _merge(self, term: str) -> None:
        overlay = self._pending.pop(term)
        base = self._lists.get(term, self._empty)
        rows = [(rowid, *row) for rowid, row in overlay.items() if row is not None]
        added = np.array(rows, dtype=np.int64).reshape(-1, 3).T
        columns = np.stack([base.passages, base.tf, base.length])
        if columns.shape[1]:  # drop the rows the overlay replaces or removes
            changed = np.sort(np.fromiter(overlay, dtype=np.int64, count=len(overlay)))
            at = np.minimum(changed.searchsorted(columns[0]), len(changed) - 1)
            columns = columns[:, changed[at] != columns[0]]
        columns = np.concatenate([columns, added], axis=1)
        columns = columns[:, columns[0].argsort(kind="stable")]
        if columns.shape[1]:
            self._lists[term] = _postings(columns)
        else:
            self._lists.pop(term, None)


def load_all(conn: sqlite3.Connection) -> tuple[Totals, dict[str, Postings]]:
    """The totals and every term's postings, as the database has them now.

    One row per term with its postings concatenated: a row per posting would build
    one Python tuple per posting before any array existed, far more memory than the
    arrays themselves.
    """
    total, words = conn.execute("SELECT passages, terms FROM kb_stats").fetchone()
    lists: dict[str, Postings] = {}
    for term, *columns in conn.execute(
        "SELECT term, group_concat(passage), group_concat(tf), group_concat(length)"
        " FROM postings GROUP BY term"
    ):
        values = np.array([c.split(",") for c in columns], dtype=np.int64)
        lists[term] = _postings(values[:, np.argsort(values[0], kind="stable")])
    return Totals(int(total), int(words)), lists


def _postings(columns: npt.NDArray[np.int64]) -> Postings:
    """Postings from an array of three rows: passages, tf, length."""
    return Postings(columns[0], columns[1], columns[2])


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
    passages, scores = _best(passages, scores, max(limit * 2, 16))
    if len(selective) < len(useful):  # rescore with every term: exact BM25
        scores = _rescored([(lists[t], idf[t]) for t in sorted(useful)], average, passages)
        passages, scores = _best(passages, scores, limit)
    return list(zip(passages[:limit].tolist(), scores[:limit].tolist(), strict=True))


def _summed(terms: Sequence[tuple[Postings, float]], average: float) -> tuple[Ints, Floats]:
    """Every passage with any of the terms and its score, summed in ``terms`` order.

    Each list is ascending, so a stable sort of their concatenation is a merge that
    keeps a passage's rows in ``terms`` order; bincount then adds each passage's
    rows one after the other from 0.0 (what np.unique + bincount did, with fewer
    array operations).
    """
    if len(terms) == 1:
        postings, idf = terms[0]
        return postings.passages, postings.scores(idf, average)
    passages = np.concatenate([p.passages for p, _ in terms])
    values = np.concatenate([p.scores(idf, average) for p, idf in terms])
    order = passages.argsort(kind="stable")
    passages, values = passages[order], values[order]
    first = np.empty(len(passages), dtype=bool)
    first[0] = True
    np.not_equal(passages[1:], passages[:-1], out=first[1:])
    group = first.cumsum()
    group -= 1
    summed = np.bincount(group, weights=values)  # float64 (weights are)
    return passages[first], summed.astype(np.float64, copy=False)


def _rescored(terms: Sequence[tuple[Postings, float]], average: float, passages: Ints) -> Floats:
    """Scores of ``passages`` with every term, summed in ``terms`` order (a passage
    without the term adds 0.0, which leaves its sum as it was)."""
    scores = np.zeros(len(passages), dtype=np.float64)
    for postings, idf in terms:
        rows = postings.passages
        where = rows.searchsorted(passages)
        np.minimum(where, len(rows) - 1, out=where)
        scores += np.where(rows[where] == passages, postings.scores(idf, average)[where], 0.0)
    return scores


def _best(passages: Ints, scores: Floats, count: int) -> tuple[Ints, Floats]:
    """The ``count`` best passages and their scores: score descending, then rowid."""
    if len(scores) > count:
        kth = len(scores) - count
        cutoff = scores.copy()
        cutoff.partition(kth)
        chosen = (scores >= cutoff[kth]).nonzero()[0]
        passages, scores = passages[chosen], scores[chosen]
    order = np.lexsort((passages, -scores))[:count]
    return passages[order], scores[order]
