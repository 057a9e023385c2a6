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
    document_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE TABLE IF NOT EXISTS kb_log (document_id TEXT PRIMARY KEY, seq INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kb_log_seq ON kb_log (seq);
CREATE TABLE IF NOT EXISTS kb_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    documents INTEGER NOT NULL DEFAULT 0,
    passages INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO kb_seq (id, seq) VALUES (1, 0);
"""

# a passage's id is "<document id>#<ordinal>"; ``{}`` takes "(?, ?)" pairs of those
PASSAGES = """
WITH wanted (document_id, ordinal) AS (VALUES {})
SELECT p.document_id, p.ordinal, p.title, p.content, d.metadata, d.created_at
FROM wanted w CROSS JOIN passages p ON p.document_id = w.document_id AND p.ordinal = w.ordinal
JOIN documents d ON d.id = p.document_id
"""

PASSAGES_OF = """
SELECT document_id, ordinal, title, content FROM passages WHERE document_id IN ({})
ORDER BY document_id, ordinal
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


# passages keyed by (document, ordinal) alone: the passage id column, its UNIQUE index,
# the document index and the analysed terms (the index analyses the text) go
_SLIM_PASSAGES = (
    "CREATE TABLE passages_slim (rowid INTEGER PRIMARY KEY, document_id TEXT NOT NULL,"
    " ordinal INTEGER NOT NULL, title TEXT NOT NULL, content TEXT NOT NULL,"
    " UNIQUE (document_id, ordinal))",
    "INSERT INTO passages_slim (document_id, ordinal, title, content)"
    " SELECT document_id, ordinal, title, content FROM passages ORDER BY rowid",
    "DROP TABLE passages",
    "ALTER TABLE passages_slim RENAME TO passages",
)

# the knowledge base's sizes kept with the log's sequence (a count(*) per ingest grew
# with the corpus)
_COUNTS = (
    "ALTER TABLE kb_seq ADD COLUMN documents INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE kb_seq ADD COLUMN passages INTEGER NOT NULL DEFAULT 0",
    "UPDATE kb_seq SET documents = (SELECT count(*) FROM documents),"
    " passages = (SELECT count(*) FROM passages)",
)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a database of an earlier layout up to this one, each step in one
    transaction. Before the document log: passages take their terms from the FTS5
    table, the postings go, and every document enters the log (sequences 1..n).
    Before the slim passages: each passage is rewritten without its id and terms
    (the knowledge index, whose schema changed too, is rebuilt from the log), and the
    log's row takes the numbers of documents and passages."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "passages_fts" in tables:
        _run(conn, _MIGRATE)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(passages)")}
    if "terms" in columns:
        _run(conn, _SLIM_PASSAGES)
    sizes = {r[1] for r in conn.execute("PRAGMA table_info(kb_seq)")}
    if sizes and "documents" not in sizes:
        _run(conn, _COUNTS)


def _run(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
