"""Redis backend (``redis.asyncio``), for several replicas of the context service.

Memory of a session is one list per type whose items are ``"<seq> <json>"``;
appends, eviction and clears are single Lua scripts (atomic). The knowledge base
keeps a hash per document and per passage (its text) and the shared
document log: ``kb:seq`` (the last sequence) and ``kb:log`` (a sorted set, document
-> sequence of its latest change), written by the same script as the documents, so
every replica's index (``context.tantivy_index``) catches up from it. The cache
counters are Redis keys, so every replica sees every write.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from switchboard_server.context.knowledge_index import IndexedPassage, LogEntry
from switchboard_server.context.store import redis_scripts
from switchboard_server.context.store.base import Generations
from switchboard_server.context.values import (
    ALL_MEMORY_TYPES,
    AppendResult,
    DeleteResult,
    IngestResult,
    KnowledgeStats,
    MemoryRecord,
    MemoryType,
    NewMemory,
    PassageRow,
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
        retention_s: float = 86_400.0,
        password: str = "",
    ) -> None:
        self._retention_ms = max(1, round(retention_s * 1000))
        self._url = url
        self._password = password
        self._caps = dict(caps)
        self._p = prefix
        self._timeout = timeout_s
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    # -- plumbing -------------------------------------------------------------------

    @property
    def concurrent_reads(self) -> bool:
        return True  # every read is a network round trip

    async def open(self) -> None:
        # a password given on its own wins over one in the URL
        auth = {"password": self._password} if self._password else {}
        client = aioredis.from_url(
            self._url,
            decode_responses=True,
            **auth,
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
                "passages": [{"id": p.id, "content": p.content} for p in d.passages],
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

    async def knowledge_passages(self, passage_ids: Sequence[str]) -> dict[str, PassageRow]:
        async with self._guard(), self._r.pipeline(transaction=False) as pipe:
            for pid in passage_ids:
                pipe.hmget(
                    f"{self._p}p:{pid}", "document_id", "title", "content", "metadata", "created_at"
                )
            rows = await pipe.execute()
        return {
            pid: PassageRow(pid, r[0], r[1], r[2], json.loads(r[3]), float(r[4]))
            for pid, r in zip(passage_ids, rows, strict=True)
            if r[0] is not None
        }

    # -- the document log -----------------------------------------------------------

    async def log_head(self) -> int:
        async with self._guard():
            return int(await self._r.get(f"{self._p}kb:seq") or 0)

    async def changes_since(self, seq: int, limit: int) -> list[LogEntry]:
        async with self._guard():
            found = cast(
                list[tuple[str, float]],
                await self._r.zrangebyscore(
                    f"{self._p}kb:log", f"({seq}", "+inf", start=0, num=limit, withscores=True
                ),
            )
        return [LogEntry(int(score), str(doc_id)) for doc_id, score in found]

    async def passages_of(self, document_ids: Sequence[str]) -> list[IndexedPassage]:
        async with self._guard():
            async with self._r.pipeline(transaction=False) as pipe:
                for doc_id in document_ids:
                    pipe.hget(f"{self._p}doc:{doc_id}", "passages")
                lists = await pipe.execute()
            pids = [pid for raw in lists if raw for pid in json.loads(raw)]
            async with self._r.pipeline(transaction=False) as pipe:
                for pid in pids:
                    pipe.hmget(f"{self._p}p:{pid}", "document_id", "title", "content")
                rows = await pipe.execute()
        return [
            IndexedPassage(pid, r[0], r[1], r[2])
            for pid, r in zip(pids, rows, strict=True)
            if r[0] is not None
        ]

    async def knowledge_size(self) -> tuple[int, int]:
        async with self._guard():
            docs, passages = await self._r.hmget(f"{self._p}kb", "documents", "passages")
        return int(docs or 0), int(passages or 0)

    async def knowledge_stats(self) -> KnowledgeStats:
        # Redis holds the knowledge base in memory (the service adds its index's size), and
        # has no last-ingest time without reading every document.
        documents, passages = await self.knowledge_size()
        return KnowledgeStats(documents, passages, 0, None)

    async def list_document_ids(self, prefix: str, after: str, limit: int) -> list[str]:
        # Ids are [A-Za-z0-9._:-], none of them a glob character. A scan, then a sort:
        # a listing is an operator's tool, not a hot path.
        head = f"{self._p}doc:"
        found: list[str] = []
        async with self._guard():
            async for key in self._r.scan_iter(match=f"{head}{prefix}*", count=1000):
                doc_id = (key.decode() if isinstance(key, bytes) else str(key))[len(head) :]
                if doc_id > after:
                    found.append(doc_id)
        return sorted(found)[:limit]

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
