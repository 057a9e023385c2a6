"""Schema and statements of the SQLite backend."""

from __future__ import annotations

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
    length INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_document ON passages (document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts
    USING fts5 (terms, tokenize = 'unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS postings (
    term TEXT NOT NULL,
    passage INTEGER NOT NULL,
    tf INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (term, passage)
) WITHOUT ROWID;
DROP TABLE IF EXISTS term_df;  -- document frequencies: the postings lists' lengths now
CREATE TABLE IF NOT EXISTS kb_stats (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    passages INTEGER NOT NULL,
    terms INTEGER NOT NULL
);
INSERT OR IGNORE INTO kb_stats (id, passages, terms) VALUES (1, 0, 0);
"""

PASSAGES = """
SELECT p.rowid, p.id, p.document_id, p.title, p.content, d.metadata, d.created_at
FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.rowid IN ({})
"""
