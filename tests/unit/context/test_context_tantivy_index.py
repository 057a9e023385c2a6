"""The tantivy knowledge index: exact top-k BM25 (tantivy's variant, fieldnorms
included) against an exhaustive scorer, re-ingest and delete through the log, and
catching up on open when the index is missing, behind, corrupt or ahead of the log."""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tantivy

from switchboard_server.context.bm25 import exhaustive_top
from switchboard_server.context.knowledge_index import IndexedPassage, LogEntry
from switchboard_server.context.tantivy_index import IndexInUse, TantivyIndex
from switchboard_server.context.values import Document, Passage, PreparedDocument


class MemoryLog:
    """A ``KnowledgeLog`` in memory: documents as lists of passages' words (each kept
    as it is by the index's analyzer)."""

    def __init__(self) -> None:
        self.documents: dict[str, list[tuple[str, ...]]] = {}
        self.changed: dict[str, int] = {}
        self.seq = 0
        self.read: list[str] = []  # the documents whose passages were read back

    def write(self, documents: dict[str, list[tuple[str, ...]] | None]) -> None:
        """One write: each document set to its passages, or deleted (None)."""
        for doc_id, passages in documents.items():
            self.seq += 1
            if passages is None:
                self.documents.pop(doc_id, None)
            else:
                self.documents[doc_id] = passages
            self.changed[doc_id] = self.seq

    async def log_head(self) -> int:
        return self.seq

    async def changes_since(self, seq: int, limit: int) -> list[LogEntry]:
        found = sorted((s, d) for d, s in self.changed.items() if s > seq)[:limit]
        return [LogEntry(s, d) for s, d in found]

    async def passages_of(self, document_ids: Sequence[str]) -> list[IndexedPassage]:
        self.read.extend(document_ids)
        return [
            IndexedPassage(f"{d}#{i}", d, "", " ".join(words))
            for d in document_ids
            for i, words in enumerate(self.documents.get(d, []))
        ]


def zipf_corpus(rng: random.Random, passages: int, vocabulary: int) -> list[tuple[str, ...]]:
    weights = [1.0 / (rank + 1) for rank in range(vocabulary)]
    words = [f"w{i}" for i in range(vocabulary)]
    return [tuple(rng.choices(words, weights, k=rng.randint(20, 130))) for _ in range(passages)]


def exact(
    log: MemoryLog, query: list[str], limit: int
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """The exhaustive top ``limit`` (passage id, score) and every passage's score."""
    ids = [f"{d}#{i}" for d, ps in log.documents.items() for i in range(len(ps))]
    texts = [t for ps in log.documents.values() for t in ps]
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    postings = []
    for term in query:
        rows = [(n, t.count(term)) for n, t in enumerate(texts) if term in t]
        postings.append(
            (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows]))
        )
    every = exhaustive_top(range(len(query)), postings, lengths, len(texts))
    scores = {ids[p]: s for p, s in every}
    return [(ids[p], s) for p, s in every[:limit]], scores


async def opened(path: Path, log: MemoryLog) -> TantivyIndex:
    index = TantivyIndex(path, log, heap_bytes=15_000_000, batch_documents=50)
    await index.open()
    return index


async def test_top_k_is_exact_bm25_over_the_whole_corpus(tmp_path: Path) -> None:
    rng = random.Random(7)
    log = MemoryLog()
    corpus = zipf_corpus(rng, 1500, 400)
    for start in range(0, len(corpus), 300):  # several commits: several segments
        log.write({f"d{n}": [corpus[n]] for n in range(start, start + 300)})
    index = await opened(tmp_path / "index", log)
    try:
        recalls = []
        for _ in range(60):
            query = list(dict.fromkeys(f"w{rng.randint(0, 399)}" for _ in range(rng.randint(1, 5))))
            found = [p.passage_id for p in await index.search(" ".join(query), 8)]
            top, scores = exact(log, query, 8)
            assert len(found) == len(top)
            kth = top[-1][1]
            # every passage returned scores at least the 8th best (f32 vs f64: ties aside)
            assert all(scores[p] >= kth * (1 - 1e-5) for p in found), query
            recalls.append(len(set(found) & {p for p, _ in top}) / len(top))
        assert sum(recalls) / len(recalls) >= 0.99
    finally:
        await index.close()


async def test_reingest_and_delete_change_what_is_found(tmp_path: Path) -> None:
    log = MemoryLog()
    log.write({"a": [("red", "boat")], "b": [("blue", "boat")]})
    index = await opened(tmp_path / "index", log)
    try:
        assert {p.passage_id for p in await index.search("boat", 8)} == {"a#0", "b#0"}
        log.write({"a": [("green", "car"), ("green", "boat")]})  # replaced: two passages
        log.write({"b": None})  # deleted
        assert await index.catch_up() == log.seq
        assert [p.passage_id for p in await index.search("boat", 8)] == ["a#1"]
        assert await index.search("red", 8) == []
        assert await index.search("blue", 8) == []
        assert [p.passage_id for p in await index.search("green", 8)] in (
            ["a#0", "a#1"],
            ["a#1", "a#0"],
        )
        (hit,) = await index.search("car green", 1)
        assert hit.passage_id == "a#0"
        assert 0 < hit.relevance <= 1
    finally:
        await index.close()


def prepared(doc_id: str, passages: list[tuple[str, ...]]) -> PreparedDocument:
    return PreparedDocument(
        Document(doc_id, "", ""),
        tuple(Passage(f"{doc_id}#{i}", doc_id, i, "", " ".join(t)) for i, t in enumerate(passages)),
    )


async def test_written_passages_are_not_read_back_unless_stale(tmp_path: Path) -> None:
    """A write's hand-over (``written``) spares reading its passages back from the log;
    a hint for a sequence that is no longer a document's latest change is not used."""
    log = MemoryLog()
    index = await opened(tmp_path / "index", log)
    try:
        first = log.seq + 1
        log.write({"a": [("red", "boat")], "b": [("blue", "boat")]})
        index.written(first, [prepared("a", [("red", "boat")]), prepared("b", [("blue", "boat")])])
        assert await index.catch_up() == log.seq
        assert log.read == []  # both taken from the hand-over
        assert {p.passage_id for p in await index.search("boat", 8)} == {"a#0", "b#0"}

        first = log.seq + 1
        log.write({"c": [("old", "car")]})
        index.written(first, [prepared("c", [("old", "car")])])
        log.write({"c": [("new", "car")]})  # a later write (another replica): no hint
        assert await index.catch_up() == log.seq
        assert log.read == ["c"]
        assert await index.search("old", 8) == []
        assert [p.passage_id for p in await index.search("new", 8)] == ["c#0"]

        index.written(log.seq + 1, [prepared("x", [("ghost",)])])  # not what was logged there
        log.write({"d": [("real",)]})
        assert await index.catch_up() == log.seq
        assert log.read == ["c", "d"]
        assert await index.search("ghost", 8) == []
        assert [p.passage_id for p in await index.search("real", 8)] == ["d#0"]
    finally:
        await index.close()


class WriteDuringApply(MemoryLog):
    """A log that takes another write (``then``) right after the index first reads it,
    while the index applies what it read: the next write lands during that commit."""

    def __init__(self, then: dict[str, list[tuple[str, ...]] | None]) -> None:
        super().__init__()
        self.then: dict[str, list[tuple[str, ...]] | None] | None = then
        self.read_at: list[int] = []  # the applied sequence of each read of the log

    async def changes_since(self, seq: int, limit: int) -> list[LogEntry]:
        found = await super().changes_since(seq, limit)
        self.read_at.append(seq)
        if found and self.then is not None:
            self.write(self.then)
            self.then = None
        return found


async def test_a_write_waits_only_for_the_commit_that_covers_it(tmp_path: Path) -> None:
    """``catch_up`` returns once its own head is applied (``refresh=wait_for``), not once
    the log is drained; the applier goes on with the write that came in meanwhile, in
    a commit of its own, without another caller asking."""
    log = WriteDuringApply({"b": [("blue", "boat")]})
    index = await opened(tmp_path / "index", log)
    try:
        log.write({"a": [("red", "boat")]})
        assert await index.catch_up() == 1  # "b" (2) came in during the commit of "a"
        assert [p.passage_id for p in await index.search("red", 8)] == ["a#0"]
        assert await index.catch_up() == 2
        assert log.read_at[-3:] == [0, 1, 2]  # "a" alone, then "b", then nothing more
        assert {p.passage_id for p in await index.search("boat", 8)} == {"a#0", "b#0"}
    finally:
        await index.close()


async def answers(index: TantivyIndex) -> list[list[str]]:
    """The passages each query matches (not their order: an index written in steps
    counts deleted passages in BM25's statistics until a merge drops them)."""
    return [
        sorted(p.passage_id for p in await index.search(f"w{i} w{i + 7}", 1000)) for i in range(40)
    ]


@pytest.mark.parametrize("damage", ["deleted", "behind", "corrupt", "ahead"])
async def test_open_catches_up_or_rebuilds(tmp_path: Path, damage: str) -> None:
    rng = random.Random(3)
    log = MemoryLog()
    corpus = zipf_corpus(rng, 400, 60)
    log.write({f"d{n}": [corpus[n]] for n in range(200)})
    path = tmp_path / "index"
    index = await opened(path, log)
    await index.close()
    shutil.copytree(path, tmp_path / "old")  # the index as of the first write

    log.write({f"d{n}": [corpus[n]] for n in range(200, 400)})
    log.write({f"d{n}": None for n in range(0, 400, 3)})
    index = await opened(path, log)
    expected = await answers(index)
    await index.close()

    if damage == "deleted":
        shutil.rmtree(path)
    elif damage == "behind":  # e.g. a copy restored from a backup
        shutil.rmtree(path)
        shutil.copytree(tmp_path / "old", path)
    elif damage == "corrupt":
        (path / "meta.json").write_text("{not json")
    else:  # an index claiming more than the log holds: a store replaced under it
        (path / "applied_seq").write_text(str(log.seq + 5))
    index = await opened(path, log)
    try:
        assert index.applied_seq == log.seq
        assert await answers(index) == expected
    finally:
        await index.close()


async def test_one_process_per_index_directory(tmp_path: Path) -> None:
    log = MemoryLog()
    index = await opened(tmp_path / "index", log)
    try:
        with pytest.raises(IndexInUse, match="SWITCHBOARD_CONTEXT_INDEX_DIR"):
            await opened(tmp_path / "index", log)
    finally:
        await index.close()


async def test_index_and_query_share_the_analyzer(tmp_path: Path) -> None:
    """Passages are analysed by tantivy (Snowball English, ASCII folding, stop words and
    chat fillers dropped) and queries by the same analyzer: other forms of a word
    find it, and a query of stop words alone finds nothing."""
    log = MemoryLog()
    log.write({"a": [("Retrying", "failed", "connections", "to", "the", "café")]})
    log.write({"b": [("The", "weather", "report")]})
    index = await opened(tmp_path / "index", log)
    try:
        for query in ("retried connection", "RETRIES", "cafe", "Café connect"):
            assert [p.passage_id for p in await index.search(query, 8)] == ["a#0"], query
        assert index.query_terms("Please tell me about the retries, retried!") == ["retri"]
        assert await index.search("please tell me the", 8) == []
    finally:
        await index.close()


async def test_an_index_of_another_schema_is_rebuilt(tmp_path: Path) -> None:
    """An index written by an earlier version (pre-analysed ``terms``, no analyzer)
    does not open with this schema: it is rebuilt from the log, not half-used."""
    log = MemoryLog()
    log.write({"a": [("red", "boat")], "b": [("blue", "car")]})
    path = tmp_path / "index"
    path.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("passage_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("document_id", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("terms", tokenizer_name="whitespace", index_option="freq")
    old = tantivy.Index(builder.build(), path=str(path), reuse=False)
    writer = old.writer(15_000_000, 1)
    writer.add_document(tantivy.Document(passage_id="a#0", document_id="a", terms="stale"))
    writer.commit()
    writer.wait_merging_threads()
    (path / "applied_seq").write_text(str(log.seq))
    index = await opened(path, log)
    try:
        assert index.applied_seq == log.seq
        assert [p.passage_id for p in await index.search("boat", 8)] == ["a#0"]
        assert await index.search("stale", 8) == []
    finally:
        await index.close()
