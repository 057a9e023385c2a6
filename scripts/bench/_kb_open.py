"""Open a benchmark index in a fresh process and answer one query: how long that took
(after imports) and the process's RSS then. ``python -m scripts.bench._kb_open
tantivy|fts5 PATH WORD...`` prints JSON ``{"open_s": .., "rss_mb": ..}``."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import tantivy


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main(system: str, path: str, words: list[str]) -> None:
    started = time.perf_counter()
    if system == "tantivy":
        index = tantivy.Index.open(path)
        schema = index.schema
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", w)) for w in words]
        )
        index.searcher().search(query, 8, count=False)
    else:
        conn = sqlite3.connect(path)
        sql = "SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 8"
        conn.execute(sql, (" OR ".join(words),)).fetchall()
    print(json.dumps({"open_s": round(time.perf_counter() - started, 3), "rss_mb": rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
