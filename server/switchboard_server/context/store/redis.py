"""Redis backend (``redis.asyncio``), for several replicas of the context service.

Memory of a session is one list per type whose items are ``"<seq> <json>"``;
appends, eviction and clears are single Lua scripts (atomic). The knowledge base
keeps each passage's term frequencies in a hash and one sorted set per term
(``passage -> tf``); a query takes the candidate passages of its terms and scores
them with BM25 in Python using FTS5's formula, so it ranks like the SQLite backend.
The cache counters are Redis keys, so every replica sees every write.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from switchboard_server.context import bm25
from switchboard_server.context.store import redis_scripts
from switchboard_server.context.store.base import Generations
from switchboard_server.context.values import (
    ALL_MEMORY_TYPES,
    AppendResult,
    DeleteResult,
    IngestResult,
    KnowledgeHit,
    MemoryRecord,
    MemoryType,
    NewMemory,
    PreparedDocument,
)
from switchboard_server.errors import ErrorReason, Unavailable
from switchboard_server.idempotency import RequestKey
from switchboard_server.redis_writes import CONNECTION_ERRORS, idempotent, run_keyed

_TYPE_INDEX = {t: i + 1 for i, t in enumerate(ALL_MEMORY_TYPES)}


class RedisStore:
    """Knowledge base and memory in one Redis database under a key prefix."""

    def __init__(
        self,
        url: str,
        caps: Mapping[MemoryType, int],
        *,
        prefix: str = "switchboard:context:",
        timeout_s: float = 2.0,
        candidate_limit: int = 200,
        retention_s: float = 86_400.0,
    ) -> None:
        self._retention_ms = max(1, round(retention_s * 1000))
        self._url = url
        self._caps = dict(caps)
        self._p = prefix
        self._timeout = timeout_s
        self._candidate_limit = candidate_limit
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    # -- plumbing -------------------------------------------------------------------

    @property
    def concurrent_reads(self) -> bool:
        return True  # every read is a network round trip

    async def open(self) -> None:
        client = aioredis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
        )
        self._client = client
        self._scripts = {
            name: client.register_script(idempotent(body))
            for name, body in (
                ("append", redis_scripts.APPEND_MEMORY),
                ("clear", redis_scripts.CLEAR_MEMORY),
                ("ingest", redis_scripts.INGEST),
                ("delete", redis_scripts.DELETE),
            )
        }
        try:
            async with self._guard():
                await client.ping()
        except Unavailable:
            await client.aclose()
            self._client = None
            raise

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> None:
        async with self._guard():
            await self._r.ping()

    @property
    def _r(self) -> aioredis.Redis:
        assert self._client is not None, "store not open"
        return self._client

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except CONNECTION_ERRORS as exc:
            raise Unavailable(
                "context store unavailable", reason=ErrorReason.STORE_UNAVAILABLE
            ) from exc

    async def _write(
        self,
        script: str,
        key: RequestKey | None,
        *,
        keys: Sequence[str] = (),
        args: Sequence[Any] = (),
        extra: str = "",
    ) -> tuple[Any, str, bool]:
        """Run a write script under ``key``: (its outcome, ``extra``, whether it is the
        recorded outcome of an earlier call with the key)."""
        async with self._guard():
            done = await run_keyed(
                self._scripts[script],
                key,
                outcome_key_prefix=f"{self._p}req:",
                retention_ms=self._retention_ms,
                keys=keys,
                args=args,
                extra=extra,
            )
        return json.loads(done.outcome), done.extra, done.replayed

    def _memory_keys(self, session_id: str) -> list[str]:
        return [f"{self._p}m:{{{session_id}}}:{t.value}" for t in ALL_MEMORY_TYPES]

    def _session_gen_key(self, session_id: str) -> str:
        return f"{self._p}g:{{{session_id}}}"

    # -- memory ---------------------------------------------------------------------

    async def append_memory(
        self,
        session_id: str,
        entries: Sequence[NewMemory],
        now: float,
        *,
        key: RequestKey | None = None,
    ) -> AppendResult:
        ids = tuple(uuid.uuid4().hex for _ in entries)
        args: list[Any] = [self._caps[t] for t in ALL_MEMORY_TYPES]
        for entry_id, entry in zip(ids, entries, strict=True):
            payload = {
                "id": entry_id,
                "content": entry.content,
                "metadata": dict(entry.metadata),
                "created_at": now,
                "terms": list(entry.terms),
            }
            args += [_TYPE_INDEX[entry.type], json.dumps(payload)]
        keys = [
            *self._memory_keys(session_id),
            f"{self._p}seq:{{{session_id}}}",
            self._session_gen_key(session_id),
        ]
        out, kept, replayed = await self._write(
            "append", key, keys=keys, args=args, extra=json.dumps(ids)
        )
        ids = tuple(json.loads(kept))  # the first call's ids when this one is a replay
        evicted = {t: int(out[i]) for i, t in enumerate(ALL_MEMORY_TYPES) if int(out[i])}
        counts = {t: int(out[i + 3]) for i, t in enumerate(ALL_MEMORY_TYPES)}
        return AppendResult(ids, counts, evicted, replayed)

    async def clear_memory(
        self, session_id: str, types: Collection[MemoryType], *, key: RequestKey | None = None
    ) -> int:
        keys = [
            k
            for t, k in zip(ALL_MEMORY_TYPES, self._memory_keys(session_id), strict=True)
            if t in types
        ]
        keys.append(self._session_gen_key(session_id))
        deleted, _, _ = await self._write("clear", key, keys=keys)
        return int(deleted)

    async def memory_counts(self, session_id: str) -> Mapping[MemoryType, int]:
        async with self._guard(), self._r.pipeline(transaction=False) as pipe:
            for key in self._memory_keys(session_id):
                pipe.llen(key)
            lengths = await pipe.execute()
        return {t: int(n) for t, n in zip(ALL_MEMORY_TYPES, lengths, strict=True)}

    async def list_memory(
        self, session_id: str, types: Collection[MemoryType]
    ) -> list[MemoryRecord]:
        wanted = [
            (t, k)
            for t, k in zip(ALL_MEMORY_TYPES, self._memory_keys(session_id), strict=True)
            if t in types
        ]
        async with self._guard(), self._r.pipeline(transaction=False) as pipe:
            for _, key in wanted:
                pipe.lrange(key, 0, -1)
            lists = await pipe.execute()
        records = []
        for (memory_type, _), items in zip(wanted, lists, strict=True):
            for item in items:
                seq, _, raw = item.partition(" ")
                data = json.loads(raw)
                records.append(
                    MemoryRecord(
                        data["id"],
                        memory_type,
                        data["content"],
                        data["metadata"],
                        float(data["created_at"]),
                        int(seq),
                        tuple(data.get("terms", ())),
                    )
                )
        records.sort(key=lambda r: r.seq)
        return records

    # -- knowledge base -------------------------------------------------------------

    async def ingest(
        self,
        documents: Sequence[PreparedDocument],
        now: float,
        *,
        key: RequestKey | None = None,
    ) -> IngestResult:
        payload = [
            {
                "id": d.document.id,
                "title": d.document.title,
                "metadata": json.dumps(dict(d.document.metadata)),
                "created_at": repr(now),
                "passages": [
                    {
                        "id": p.id,
                        "content": p.content,
                        "length": len(p.terms),
                        "tf": dict(Counter(p.terms)),
                    }
                    for p in d.passages
                ],
            }
            for d in documents
        ]
        replaced, _, _ = await self._write("ingest", key, args=[self._p, json.dumps(payload)])
        passages = sum(len(d.passages) for d in documents)
        return IngestResult(len(documents), passages, int(replaced))

    async def delete_documents(
        self, document_ids: Sequence[str], *, key: RequestKey | None = None
    ) -> DeleteResult:
        found, _, _ = await self._write("delete", key, args=[self._p, *document_ids])
        missing = found or []  # cjson encodes an empty Lua table as {}
        return DeleteResult(len(document_ids) - len(missing), tuple(missing))

    async def search_knowledge(self, query: Sequence[str], limit: int) -> list[KnowledgeHit]:
        """BM25 (FTS5's formula) over a bounded candidate set.

        Candidates are the passages of the rarest query terms, at most
        ``candidate_limit`` in all (the highest term frequencies when a term has
        more); terms in over half the passages bring none unless the query has no
        other term. Every candidate is scored with every query term.
        """
        if not query:
            return []
        term_keys = {t: f"{self._p}t:{t}" for t in query}
        async with self._guard():
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hmget(f"{self._p}kb", "passages", "length")
                for key in term_keys.values():
                    pipe.zcard(key)
                first = await pipe.execute()
            total, total_length = (int(v or 0) for v in first[0])
            df = {t: int(n) for t, n in zip(query, first[1:], strict=True)}
            present = sorted((t for t in query if df[t] > 0), key=lambda t: df[t])
            if total <= 0 or not present:
                return []
            useful = [t for t in present if bm25.fts5_idf(total, df[t]) > bm25.FTS5_MIN_IDF]
            budget, chosen = self._candidate_limit, list[str]()
            for term in useful or present:
                if chosen and df[term] > budget:
                    break
                chosen.append(term)
                budget -= df[term]
            async with self._r.pipeline(transaction=False) as pipe:
                for term in chosen:
                    pipe.zrevrange(term_keys[term], 0, self._candidate_limit - 1)
                candidates = sorted({pid for pids in await pipe.execute() for pid in pids})
            scored = present
            async with self._r.pipeline(transaction=False) as pipe:
                for term in scored:
                    pipe.zmscore(term_keys[term], candidates)
                pipe.hmget(f"{self._p}kb:len", candidates)
                second = await pipe.execute()
        lengths = second[-1]
        stats = {
            pid: (
                int(lengths[j] or 0),
                {t: int(second[i][j] or 0) for i, t in enumerate(scored)},
            )
            for j, pid in enumerate(candidates)
        }
        raw = bm25.raw_scores(scored, df, total, total_length / total, stats)
        idfs = [bm25.fts5_idf(total, df[t]) for t in query]
        best = sorted(raw.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        if not best:
            return []
        async with self._guard(), self._r.pipeline(transaction=False) as pipe:
            for pid, _ in best:
                pipe.hmget(
                    f"{self._p}p:{pid}", "document_id", "title", "content", "metadata", "created_at"
                )
            rows = await pipe.execute()
        return [
            KnowledgeHit(
                pid, r[0], r[1], r[2], json.loads(r[3]), float(r[4]), bm25.normalise(score, idfs)
            )
            for (pid, score), r in zip(best, rows, strict=True)
            if r[0] is not None
        ]

    async def knowledge_size(self) -> tuple[int, int]:
        async with self._guard():
            docs, passages = await self._r.hmget(f"{self._p}kb", "documents", "passages")
        return int(docs or 0), int(passages or 0)

    # -- cache support --------------------------------------------------------------

    async def generations(self, session_id: str) -> Generations:
        async with self._guard():
            session, knowledge = await self._r.mget(
                self._session_gen_key(session_id), f"{self._p}kbgen"
            )
        return Generations(int(session or 0), int(knowledge or 0))

    async def is_seeded(self) -> bool:
        async with self._guard():
            return bool(await self._r.exists(f"{self._p}meta:seeded"))

    async def mark_seeded(self) -> None:
        async with self._guard():
            await self._r.set(f"{self._p}meta:seeded", "1")
