"""The postings table of the SQLite backend: BM25 of the knowledge base in SQL.

One row per (term, passage) with the term's frequency in the passage and the
passage's length in terms, written with the passage and deleted with it.
``sqlite_sql.scored`` sums BM25 over such rows (FTS5's idf, k1 and b, in FTS5's
order of operations), so the scores are those of FTS5's ``bm25()`` without its
per-row auxiliary-function call, which cost about twice as much per query.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from switchboard_server.context import bm25


def bm25_params(terms: Sequence[str], df: Mapping[str, int], total: int, words: int) -> list[Any]:
    """Bound values of ``sqlite_sql.scored``'s BM25 sum: each term's idf, then the
    constants (k1 + 1, k1, 1 - b, b) and the average passage length."""
    weights: list[Any] = []
    for term in terms:
        weights += (term, bm25.fts5_idf(total, df[term]))
    return [*weights, bm25.K1 + 1.0, bm25.K1, 1.0 - bm25.B, bm25.B, words / total]


def insert_postings(conn: sqlite3.Connection, rowid: int | None, terms: Sequence[str]) -> None:
    conn.executemany(
        "INSERT INTO postings (term, passage, tf, length) VALUES (?, ?, ?, ?)",
        [(term, rowid, tf, len(terms)) for term, tf in Counter(terms).items()],
    )


def backfill_postings(conn: sqlite3.Connection) -> None:
    """Fill ``postings`` from the FTS5 table once (databases made before it existed)."""
    if conn.execute("SELECT 1 FROM meta WHERE key = 'postings'").fetchone():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM postings")
        for rowid, terms in conn.execute("SELECT rowid, terms FROM passages_fts").fetchall():
            insert_postings(conn, rowid, terms.split())
        conn.execute("INSERT INTO meta (key, value) VALUES ('postings', '1')")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
