"""Keyed writes on Redis: a Lua write script made idempotent under a request key.

The stores on Redis (context's memory and knowledge base, orchestration's conversation
log) write with one Lua script per write. :func:`idempotent` wraps a script's body so
that the check of the request key, the write and the record of its outcome are one
atomic script: concurrent duplicates, from any replica, write once. :func:`run_keyed`
runs such a script and reads its answer in domain terms. With ``appendonly yes`` and
``appendfsync always`` Redis fsyncs a script's effects before it replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard_server.idempotency import RequestKey, reused

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a Redis call raises when the server cannot be reached or answer in time."""


class PreconditionFailed(Exception):
    """A keyed script's precondition did not hold: nothing was written or recorded."""


@dataclass(frozen=True, slots=True)
class KeyedOutcome:
    """What a keyed write script answered."""

    outcome: str
    """The outcome as JSON (the first call's, when ``replayed``)."""
    extra: str
    """The ``extra`` the (first) call kept with its outcome."""
    replayed: bool
    """The key was recorded by an earlier call: this one wrote nothing."""


def idempotent(body: str, *, precondition: str = "") -> str:
    """``body`` (a script ending in ``return``) made idempotent under a request key.

    Four more ARGV come last: the Redis key of the outcome ('' for no request key), the
    request hash, the retention in milliseconds, and a JSON ``extra`` the caller keeps
    with the outcome. The script returns ``{mode, outcome JSON, extra}``: mode 0 wrote
    now, 1 replays the recorded outcome without writing, 2 refuses a key recorded for
    another request, 3 wrote nothing because ``precondition`` (a Lua expression,
    checked after the key) was false. The outcome expires with the retention (PEXPIRE),
    which bounds the storage.
    """
    check = f"if not ({precondition}) then return {{3, '', ''}} end\n" if precondition else ""
    return (
        """
local idem_extra = table.remove(ARGV)
local idem_ttl = table.remove(ARGV)
local idem_hash = table.remove(ARGV)
local idem_key = table.remove(ARGV)
if idem_key ~= '' then
  local seen = redis.call('HMGET', idem_key, 'hash', 'outcome', 'extra')
  if seen[1] then
    if seen[1] ~= idem_hash then return {2, '', ''} end
    return {1, seen[2], seen[3]}
  end
end
"""
        + check
        + """local function body()
"""
        + body
        + """
end
local outcome = cjson.encode(body())
if idem_key ~= '' then
  redis.call('HSET', idem_key, 'hash', idem_hash, 'outcome', outcome, 'extra', idem_extra)
  redis.call('PEXPIRE', idem_key, idem_ttl)
end
return {0, outcome, idem_extra}
"""
    )


async def run_keyed(
    script: AsyncScript,
    key: RequestKey | None,
    *,
    outcome_key_prefix: str,
    retention_ms: int,
    keys: Sequence[str] = (),
    args: Sequence[Any] = (),
    extra: str = "",
) -> KeyedOutcome:
    """Run an :func:`idempotent` script under ``key`` (its outcome kept at
    ``outcome_key_prefix + request_id``). Raises the :func:`reused` error for a key
    recorded for another request, :class:`PreconditionFailed` when the precondition
    was false, and Redis' own errors as they come."""
    tail: list[Any] = (
        [f"{outcome_key_prefix}{key.request_id}", key.request_hash, retention_ms, extra]
        if key is not None
        else ["", "", retention_ms, extra]
    )
    mode, outcome, kept = await script(keys=keys, args=[*args, *tail])
    if int(mode) == 2:
        assert key is not None, "only a keyed write can be refused"
        raise reused(key)
    if int(mode) == 3:
        raise PreconditionFailed
    return KeyedOutcome(str(outcome), str(kept), int(mode) == 1)
