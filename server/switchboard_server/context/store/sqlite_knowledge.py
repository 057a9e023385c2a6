"""The SQLite backend's knowledge-base statements: each runs in the caller's transaction.

A passage row is keyed by its document and ordinal (its id, ``<document>#<ordinal>``,
is derived), holds its title and content and nothing analysed: the knowledge index
analyses the text itself. Every document a write touches takes the next sequence of
the document log (``kb_log``, ``kb_seq``) in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from switchboard_server.context.knowledge_index import IndexedPassage
from switchboard_server.context.store.sqlite_sql import PASSAGES, PASSAGES_OF
from switchboard_server.context.values import DeleteResult, IngestResult, PreparedDocument

IN_CHUNK = 10_000  # values bound in one ``IN (...)``


def ingest(
    conn: sqlite3.Connection, documents: Sequence[PreparedDocument], now: float
) -> IngestResult:
    """Replace ``documents`` (and their passages) and log them."""
    ids = [(d.document.id,) for d in documents]
    # one lookup finds what is replaced (none, in a bulk load of new documents) instead
    # of two DELETE statements per document
    present = _present(conn, [d.document.id for d in documents])
    replaced, dropped = _delete_documents(conn, [(i,) for i in present]) if present else (0, 0)
    conn.executemany(
        "INSERT INTO documents (id, title, metadata, created_at) VALUES (?, ?, ?, ?)",
        [
            (
                d.document.id,
                d.document.title,
                json.dumps(dict(d.document.metadata)) if d.document.metadata else "{}",
                now,
            )
            for d in documents
        ],
    )
    conn.executemany(
        "INSERT INTO passages (document_id, ordinal, title, content) VALUES (?, ?, ?, ?)",
        [(p.document_id, p.ordinal, p.title, p.content) for d in documents for p in d.passages],
    )
    passages = sum(len(d.passages) for d in documents)
    first = _log(conn, ids, len(documents) - replaced, passages - dropped)
    return IngestResult(len(documents), passages, replaced, first)


def delete(conn: sqlite3.Connection, document_ids: Sequence[str]) -> DeleteResult:
    """Delete the documents that exist (and log them); the others are ``missing``."""
    present = _present(conn, document_ids)
    missing = tuple(i for i in document_ids if i not in present)
    gone = [(i,) for i in document_ids if i in present]
    if gone:
        documents, passages = _delete_documents(conn, gone)
        _log(conn, gone, -documents, -passages)
    return DeleteResult(len(gone), missing)


def passages_by_id(conn: sqlite3.Connection, passage_ids: Sequence[str]) -> list[Any]:
    """Rows (passage id, document id, title, content, metadata, created_at) of those
    passages that exist; an id that is not ``<document>#<ordinal>`` matches nothing."""
    keys: list[Any] = []
    for pid in passage_ids:
        document_id, _, ordinal = pid.rpartition("#")
        if document_id and ordinal.isdigit():
            keys.extend((document_id, int(ordinal)))
    if not keys:
        return []
    query = PASSAGES.format(",".join(["(?, ?)"] * (len(keys) // 2)))
    return [(f"{r[0]}#{r[1]}", r[0], *r[2:]) for r in conn.execute(query, keys).fetchall()]


def passages_of(conn: sqlite3.Connection, document_ids: Sequence[str]) -> list[IndexedPassage]:
    """The current passages of those documents, by document and ordinal."""
    found: list[IndexedPassage] = []
    for start in range(0, len(document_ids), IN_CHUNK):
        chunk = tuple(document_ids[start : start + IN_CHUNK])
        query = PASSAGES_OF.format(",".join("?" * len(chunk)))
        for r in conn.execute(query, chunk):
            found.append(IndexedPassage(f"{r[0]}#{r[1]}", r[0], r[2], r[3]))
    return found


def _present(conn: sqlite3.Connection, document_ids: Sequence[str]) -> set[str]:
    """Those of ``document_ids`` that exist."""
    found: set[str] = set()
    for start in range(0, len(document_ids), IN_CHUNK):
        chunk = tuple(document_ids[start : start + IN_CHUNK])
        query = f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(chunk))})"
        found.update(r[0] for r in conn.execute(query, chunk))
    return found


def _log(conn: sqlite3.Connection, ids: Sequence[tuple[str]], documents: int, passages: int) -> int:
    """Record that the documents ``ids`` changed, in the write's transaction: each takes
    the log's next sequence (one per document, so a reader can page by sequence), and
    the numbers of documents and passages move by ``documents`` and ``passages``.
    Returns the first document's sequence (0 for none)."""
    if not ids:
        return 0
    (last,) = conn.execute(
        "UPDATE kb_seq SET seq = seq + ?, documents = documents + ?, passages = passages + ?"
        " RETURNING seq",
        (len(ids), documents, passages),
    ).fetchone()
    first = int(last) - len(ids) + 1
    conn.executemany(
        "INSERT INTO kb_log (document_id, seq) VALUES (?, ?)"
        " ON CONFLICT (document_id) DO UPDATE SET seq = excluded.seq",
        [(i, first + n) for n, (i,) in enumerate(ids)],
    )
    return first


def _delete_documents(conn: sqlite3.Connection, ids: Sequence[tuple[str]]) -> tuple[int, int]:
    """Delete documents and their passages; how many of each there were."""
    passages = conn.executemany("DELETE FROM passages WHERE document_id = ?", ids).rowcount
    return conn.executemany("DELETE FROM documents WHERE id = ?", ids).rowcount, passages
