"""The knowledge base's lexical index: tantivy, on disk and memory-mapped.

One tantivy document per passage: ``passage_id`` (stored), ``document_id`` (to drop
a document's passages) and ``text``, the passage's title and content analysed by
tantivy in its indexing threads with ``analyzer`` (Snowball English), with term
frequencies and no positions. A query's text goes through the same analyzer, so the
index and the query agree on every term; a query is an OR of its distinct terms
ranked by tantivy's BM25 over the whole corpus, exact top-k (block-max WAND skips
only what cannot enter the top k), no match budget:

    score(p) = sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)   = ln(1 + (N - n_t + 0.5) / (n_t + 0.5)),   k1 = 1.2,  b = 0.75

where ``dl`` is the passage's term count (title and content) after tantivy's
fieldnorm quantization (a one-byte code: exact up to 40 terms, then buckets that grow
by about 1/8), and ``N``, ``n_t`` and ``avgdl`` count the documents of every
segment, deleted ones included until a merge drops them (as Lucene does). Scores are
float32. Relevance is the score over ``sum_t idf(t) * (k1 + 1)``, the most the query
could score. An index made with another schema (e.g. before the analyzer) fails to
open and is rebuilt from the log.

The index records the last log sequence it applied in ``applied_seq`` beside its
files, written (atomically) only after the tantivy commit that applied it returned:
after a crash it is at most behind, and catching up again is idempotent. An index
that cannot be opened, or that claims more than the log holds (a store replaced
under it), is rebuilt from the log. A write through this replica hands its passages
over (``written``, keyed by the log sequences it took), so catching up after it does
not read them back from the log. Writes run on one thread, searches on the
caller's executor; tantivy releases the GIL while it works.
"""

from __future__ import annotations

import asyncio
import fcntl
import math
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

import structlog
import tantivy

from switchboard_server.context import analyzer
from switchboard_server.context.knowledge_index import (
    KnowledgeLog,
    LogEntry,
    ScoredPassage,
)
from switchboard_server.context.values import PreparedDocument

log = structlog.get_logger(__name__)
T = TypeVar("T")
_Row = tuple[str, str, str, str]  # a passage to index: its id, its document's, title, content

K1 = 1.2
B = 0.75
SEQ_FILE = "applied_seq"
FIELDS = ("passage_id", "document_id", "text")


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("passage_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("document_id", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("text", tokenizer_name=analyzer.NAME, index_option="freq")
    return builder.build()


def idf(total: int, containing: int) -> float:
    """tantivy's (and Lucene's) BM25 idf."""
    return math.log(1.0 + (total - containing + 0.5) / (containing + 0.5))


class IndexInUse(RuntimeError):
    """Another process holds the index directory."""


class TantivyIndex:
    """A ``KnowledgeIndex`` in the directory ``path``, fed from ``source``."""

    def __init__(
        self,
        path: Path,
        source: KnowledgeLog,
        *,
        heap_bytes: int = 64_000_000,
        writer_threads: int = 1,
        batch_documents: int = 20_000,
    ) -> None:
        self._path = path
        self._source = source
        self._heap = heap_bytes
        self._writer_threads = writer_threads
        self._batch = batch_documents
        self._schema = _schema()
        self._analyzer = analyzer.build()
        self._index: tantivy.Index | None = None
        self._writer: tantivy.IndexWriter | None = None
        self._applied = 0
        self._written: dict[int, PreparedDocument] = {}  # log sequence -> its write
        self._lock = asyncio.Lock()  # the applier's (and close's): one writer
        self._applier: asyncio.Task[None] | None = None
        self._pending = False  # woken since the applier last looked at the log
        self._progress: asyncio.Future[bool] | None = None  # the applier's next step
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="context-index-w")
        self._lock_file: IO[str] | None = None

    @property
    def applied_seq(self) -> int:
        return self._applied

    @property
    def path(self) -> Path:
        return self._path

    # -- open / close ---------------------------------------------------------------

    async def open(self) -> None:
        """Idempotent: a retry after the store was unavailable only catches up again."""
        if self._index is None:
            head = await self._source.log_head()
            await self._run(self._open_files, head)
        await self.catch_up()

    def _open_files(self, head: int) -> None:
        """Open the index on disk, or start an empty one when it is missing, unreadable
        or ahead of the log (``head``). The directory belongs to one process: a second
        one fails here, before it touches a file."""
        self._path.mkdir(parents=True, exist_ok=True)
        if self._lock_file is None:
            self._take_lock()
        applied = self._read_seq()
        if applied is not None and applied <= head and (self._path / "meta.json").exists():
            try:
                self._index = tantivy.Index(self._schema, path=str(self._path), reuse=True)
                self._index.register_tokenizer(analyzer.NAME, self._analyzer)
                self._writer = self._index.writer(self._heap, self._writer_threads)
                self._applied = applied
                return
            except (OSError, ValueError) as exc:  # corrupt files, another schema
                log.warning("knowledge.index_unreadable", path=str(self._path), error=str(exc))
                self._index = self._writer = None
        if applied is not None or any(self._path.iterdir()):
            log.warning("knowledge.index_rebuild", applied=applied, log_head=head)
        shutil.rmtree(self._path)
        self._path.mkdir(parents=True)
        self._index = tantivy.Index(self._schema, path=str(self._path), reuse=False)
        self._index.register_tokenizer(analyzer.NAME, self._analyzer)
        self._writer = self._index.writer(self._heap, self._writer_threads)
        self._applied = 0
        self._write_seq(0)

    def _take_lock(self) -> None:
        lock = self._path.with_name(self._path.name + ".lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise IndexInUse(
                f"knowledge index {self._path} is in use by another process: give each "
                "replica its own SWITCHBOARD_CONTEXT_INDEX_DIR"
            ) from None
        self._lock_file = lock

    async def close(self) -> None:
        async with self._lock:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                await self._run(writer.wait_merging_threads)
            self._index = None
        self._thread.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    # -- the log --------------------------------------------------------------------

    def written(self, first_seq: int, documents: Sequence[PreparedDocument]) -> None:
        """Keep the passages of a write just made through this replica for ``catch_up``:
        a log entry at one of these sequences is exactly that write (a later change of
        the document takes a later sequence), so its passages need not be read back."""
        if len(self._written) + len(documents) > 4 * self._batch:
            self._written.clear()  # catch-ups failing (a full disk): read back instead
        for n, document in enumerate(documents):
            if first_seq + n > self._applied:
                self._written[first_seq + n] = document

    async def catch_up(self, seq: int = 0) -> int:
        """Return once the index has applied (and committed) the log up to ``seq`` (0:
        as far as its head when called). One applier task does the work, continuously:
        as soon as a tantivy commit returns it takes whatever the log holds after it
        (up to ``batch_documents`` documents), so a write waits only for the commit that
        covers it (Elasticsearch's ``refresh=wait_for``) while the next write is being
        stored. A failed commit (a full disk) fails the callers waiting on it; the next
        call tries again."""
        if self._writer is not None:
            self._wake()  # a write just committed: start on it while the head is read
        target = seq or await self._source.log_head()
        while self._applied < target:
            if self._writer is None:
                raise RuntimeError("index not open")
            progress = self._progress
            if progress is None:
                progress = self._progress = asyncio.get_running_loop().create_future()
            self._wake()
            if await asyncio.shield(progress):  # the applier's next commit, or its end
                break  # the log held nothing more (a head without a change of its own)
        return self._applied

    def _wake(self) -> None:
        """Have the applier look at the log again (starting it when it is not running)."""
        self._pending = True
        if self._applier is None or self._applier.done():
            self._applier = asyncio.get_running_loop().create_task(self._apply_log())

    async def _apply_log(self) -> None:
        """The applier: commit batches from the log while it holds anything after
        ``applied_seq``; end when it is drained and nobody woke it since it looked."""
        async with self._lock:
            try:
                while self._writer is not None:
                    self._pending = False
                    # writes committed in the same transaction as the last waker resume
                    # next: let them hand over their passages (``written``) first
                    await asyncio.sleep(0)
                    changes = await self._source.changes_since(self._applied, self._batch)
                    if changes:
                        await self._run(self._apply, changes, await self._passages(changes))
                        for seq in [s for s in self._written if s <= self._applied]:
                            del self._written[seq]
                        self._settle(False)
                    elif not self._pending:
                        break
            except Exception as exc:  # the waiters report it; the next catch-up retries
                self._settle(exc)
            finally:
                self._settle(True)

    def _settle(self, outcome: bool | Exception) -> None:
        """Wake the callers waiting for the applier's next step: True when it ended
        (the log drained), False after a commit, or the error it failed with."""
        progress, self._progress = self._progress, None
        if progress is None:
            return
        if isinstance(outcome, Exception):
            progress.set_exception(outcome)
            progress.exception()  # retrieved here: its callers may have gone (cancelled)
        else:
            progress.set_result(outcome)

    async def _passages(self, changes: Sequence[LogEntry]) -> list[_Row]:
        """The current passages of the changed documents, in log order: those of a write
        through this replica from ``written``, the others read back from the log."""
        held = self._written
        unknown = [
            c.document_id
            for c in changes
            if (w := held.get(c.seq)) is None or w.document.id != c.document_id
        ]
        read: dict[str, list[_Row]] = {}
        for p in await self._source.passages_of(unknown) if unknown else ():
            read.setdefault(p.document_id, []).append(
                (p.passage_id, p.document_id, p.title, p.content)
            )
        rows: list[_Row] = []
        for c in changes:
            w = held.get(c.seq)
            if w is not None and w.document.id == c.document_id:
                rows.extend((p.id, p.document_id, p.title, p.content) for p in w.passages)
            else:
                rows.extend(read.get(c.document_id, ()))
        return rows

    def _apply(self, changes: Sequence[LogEntry], passages: Sequence[_Row]) -> None:
        writer, index = self._writer, self._index
        assert writer is not None, "index not open"
        assert index is not None, "index not open"
        document = tantivy.Document
        try:
            for change in changes:
                writer.delete_documents_by_term("document_id", change.document_id)
            for passage_id, document_id, title, content in passages:
                writer.add_document(
                    document(
                        passage_id=passage_id,
                        document_id=document_id,
                        text=[title, content] if title else content,
                    )
                )
            writer.commit()
        except BaseException:  # e.g. a full disk: drop the batch, the next catch-up redoes it
            writer.rollback()
            raise
        seq = changes[-1].seq
        self._write_seq(seq)
        index.reload()
        self._applied = seq

    def _read_seq(self) -> int | None:
        try:
            return int((self._path / SEQ_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _write_seq(self, seq: int) -> None:
        """Replace the ``applied_seq`` file atomically and durably."""
        target = self._path / SEQ_FILE
        tmp = target.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(str(seq))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fd = os.open(self._path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- search ---------------------------------------------------------------------

    def query_terms(self, query: str) -> list[str]:
        """The distinct terms ``query`` searches for (the index's analyzer)."""
        return analyzer.query_terms(self._analyzer, query)

    async def search(self, query: str, limit: int) -> list[ScoredPassage]:
        if limit <= 0 or self._index is None:
            return []
        return await asyncio.to_thread(self.search_now, query, limit)

    def search_now(self, query: str, limit: int) -> list[ScoredPassage]:
        """``search`` on the calling thread."""
        index = self._index
        assert index is not None, "index not open"
        terms = self.query_terms(query)
        if not terms or limit <= 0:
            return []
        schema = self._schema
        boolean = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t, "freq"))
                for t in terms
            ]
        )
        searcher = index.searcher()
        hits = searcher.search(boolean, limit, count=False).hits
        if not hits:
            return []
        total = searcher.num_docs
        top = sum(idf(total, searcher.doc_freq("text", t)) for t in terms) * (K1 + 1.0)
        return [
            ScoredPassage(
                searcher.doc(address)["passage_id"][0], min(1.0, score / top) if top > 0 else 0.0
            )
            for score, address in hits
        ]

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the index's writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)
