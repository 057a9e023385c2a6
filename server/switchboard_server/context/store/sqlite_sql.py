"""Schema and statements of the SQLite backend."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memory (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    terms TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_session ON memory (session_id, type, seq);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    terms TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_document ON passages (document_id);
CREATE TABLE IF NOT EXISTS kb_log (document_id TEXT PRIMARY KEY, seq INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kb_log_seq ON kb_log (seq);
CREATE TABLE IF NOT EXISTS kb_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO kb_seq (id, seq) VALUES (1, 0);
"""

PASSAGES = """
SELECT p.id, p.document_id, p.title, p.content, d.metadata, d.created_at
FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.id IN ({})
"""

PASSAGES_OF = """
SELECT id, document_id, title, content, terms FROM passages WHERE document_id IN ({})
"""

_MIGRATE = (
    "ALTER TABLE passages ADD COLUMN terms TEXT NOT NULL DEFAULT ''",
    "UPDATE passages SET terms ="
    " (SELECT f.terms FROM passages_fts f WHERE f.rowid = passages.rowid)",
    "ALTER TABLE passages DROP COLUMN length",
    "DROP TABLE passages_fts",
    "DROP TABLE IF EXISTS postings",
    "DROP TABLE IF EXISTS kb_stats",
    "DROP TABLE IF EXISTS term_df",
    "CREATE TABLE kb_log (document_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE kb_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
    "INSERT INTO kb_log (document_id, seq)"
    " SELECT id, row_number() OVER (ORDER BY id) FROM documents",
    "INSERT INTO kb_seq (id, seq) SELECT 1, count(*) FROM kb_log",
)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made before the document log up to it, in one transaction:
    passages take their terms from the FTS5 table, the postings go, and every
    document enters the log (sequences 1..n)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "passages_fts" not in tables:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _MIGRATE:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
