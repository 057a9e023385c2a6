"""The conversation log on Redis, shared by every orchestration replica.

A session's turns are one sorted set (score: the turn's index; member: the turn as
JSON, index included) and a counter holding the next index. A turn is written by one
Lua script (:func:`switchboard_server.redis_writes.idempotent`): the check of its
request_id, the check that the session's next index is still the one the answer was
built with, the write and the record of the answer under the key, all atomic. So
indices are gapless and distinct per session whichever replica writes, and concurrent
duplicates of a key write once: the later one finds the key recorded and raises
``TurnAlreadyRecorded`` with the first answer. An answer includes its turn's index, so
the replica reads the next index first and the script refuses it if another turn of
the session came in between; the replica then reads again and retries (bounded).
Recorded answers expire after the retention window (PEXPIRE), which bounds them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from switchboard_server.errors import Unavailable
from switchboard_server.idempotency import RequestKey, reused
from switchboard_server.orchestration.outcome import intent_from_dict, intent_to_dict
from switchboard_server.orchestration.ports import DependencyFailed, TurnAlreadyRecorded
from switchboard_server.orchestration.values import Turn, TurnPage
from switchboard_server.redis_writes import (
    CONNECTION_ERRORS,
    PreconditionFailed,
    idempotent,
    run_keyed,
)

log = structlog.get_logger(__name__)

# KEYS: next-index counter, turns sorted set. ARGV: the index expected, the turn JSON.
_NEXT_INDEX_UNCHANGED = "tonumber(redis.call('GET', KEYS[1]) or '0') == tonumber(ARGV[1])"
_APPEND = """
redis.call('SET', KEYS[1], tonumber(ARGV[1]) + 1)
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), ARGV[2])
return tonumber(ARGV[1])
"""


def _turn_to_json(index: int, turn: Turn) -> str:
    return json.dumps(
        {
            "index": index,
            "user_message": turn.user_message,
            "reply": turn.reply,
            "intent": intent_to_dict(turn.intent),
            "timestamp": turn.timestamp.isoformat(),
            "correlation_id": turn.correlation_id,
        },
        separators=(",", ":"),
    )


def _turn_from_json(text: str) -> Turn:
    data: dict[str, Any] = json.loads(text)
    return Turn(
        index=int(data["index"]),
        user_message=data["user_message"],
        reply=data["reply"],
        intent=intent_from_dict(data["intent"]),
        timestamp=datetime.fromisoformat(data["timestamp"]),
        correlation_id=data["correlation_id"],
    )


class RedisConversationLog:
    """Turns of every session in one Redis database under a key prefix."""

    def __init__(
        self,
        url: str,
        *,
        password: str = "",
        prefix: str = "switchboard:orchestration:",
        timeout_s: float = 2.0,
        retention_s: float = 86_400.0,
        max_attempts: int = 20,
    ) -> None:
        self._url = url
        self._password = password
        self._p = prefix
        self._timeout = timeout_s
        self._retention_ms = max(1, round(retention_s * 1000))
        self._max_attempts = max_attempts
        self._client: aioredis.Redis | None = None
        self._append_script: AsyncScript | None = None

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
        self._append_script = client.register_script(
            idempotent(_APPEND, precondition=_NEXT_INDEX_UNCHANGED)
        )
        try:
            await client.ping()
        except CONNECTION_ERRORS as exc:
            await client.aclose()
            raise Unavailable("the conversation log's Redis cannot be reached") from exc
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def _r(self) -> aioredis.Redis:
        assert self._client is not None, "conversation log not open"
        return self._client

    def _keys(self, session_id: str) -> tuple[str, str]:
        return f"{self._p}n:{{{session_id}}}", f"{self._p}t:{{{session_id}}}"

    def _outcome_key(self, key: RequestKey) -> str:
        return f"{self._p}req:{key.request_id}"

    async def append(
        self,
        session_id: str,
        turn: Turn,
        *,
        key: RequestKey | None = None,
        outcome: Callable[[int], str] = str,
    ) -> int:
        counter, turns = self._keys(session_id)
        assert self._append_script is not None, "conversation log not open"
        try:
            for _ in range(self._max_attempts):
                index = int(await self._r.get(counter) or 0)
                try:
                    done = await run_keyed(
                        self._append_script,
                        key,
                        outcome_key_prefix=f"{self._p}req:",
                        retention_ms=self._retention_ms,
                        keys=(counter, turns),
                        args=(index, _turn_to_json(index, turn)),
                        extra=outcome(index) if key is not None else "",
                    )
                except PreconditionFailed:
                    continue  # another turn of the session took the index: read again
                if done.replayed:
                    raise TurnAlreadyRecorded(done.extra)
                return index
        except CONNECTION_ERRORS as exc:
            log.error("conversation_log.write_failed", error=type(exc).__name__)
            raise DependencyFailed("UNAVAILABLE") from exc
        except RedisError as exc:
            log.error("conversation_log.write_failed", error=type(exc).__name__)
            raise DependencyFailed("STORAGE_ERROR") from exc
        log.error("conversation_log.contended", attempts=self._max_attempts)
        raise DependencyFailed("CONTENDED")

    async def replay(self, key: RequestKey) -> str | None:
        try:
            recorded, answer = await self._r.hmget(self._outcome_key(key), "hash", "extra")
        except RedisError as exc:
            log.error("conversation_log.read_failed", error=type(exc).__name__)
            raise Unavailable("the conversation log cannot be read now") from exc
        if recorded is None:
            return None
        if recorded != key.request_hash:
            raise reused(key)
        return str(answer)

    async def page(self, session_id: str, start: int, size: int) -> TurnPage:
        _, turns = self._keys(session_id)
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.zcard(turns)
                pipe.zrange(turns, start, "+inf", byscore=True, offset=0, num=size + 1)
                total, rows = await pipe.execute()
        except RedisError as exc:
            log.error("conversation_log.read_failed", error=type(exc).__name__)
            raise Unavailable("the conversation log cannot be read now") from exc
        page = tuple(_turn_from_json(r) for r in rows[:size])
        next_index = _turn_from_json(rows[size]).index if len(rows) > size else None
        return TurnPage(page, next_index, int(total))
