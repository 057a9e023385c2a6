"""The postings table of the SQLite backend: what the knowledge base is ranked from.

One row per (term, passage) with the term's frequency in the passage and the
passage's length in terms, written with the passage and deleted with it.
``sqlite_index`` reads the whole table when the store opens and ranks from memory
with FTS5's ``bm25()`` formula (idf, k1 and b, in its order of operations).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence


def insert_postings(conn: sqlite3.Connection, rowid: int, terms: Sequence[str]) -> None:
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
