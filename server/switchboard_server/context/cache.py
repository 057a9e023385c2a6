"""The result cache: TTL + LRU, validated by the store's generation counters.

An entry remembers the (session, knowledge) generations read *before* its result
was computed; it is served only while both are unchanged and its TTL has not run
out. Any append/clear of the session or any ingest/delete bumps a generation, so
a stale context is never returned, even when the write came from another replica
(the Redis backend keeps the counters in Redis).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from switchboard_server.context.store.base import Generations
from switchboard_server.context.values import ContextResult


@dataclass(frozen=True, slots=True)
class _Entry:
    generations: Generations
    expires_at: float
    result: ContextResult


class ResultCache:
    """Bounded, per-instance (never module-global) cache of computed contexts."""

    def __init__(
        self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._ttl > 0 and self._max > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, generations: Generations) -> ContextResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generations != generations or entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.result

    def put(self, key: Hashable, generations: Generations, result: ContextResult) -> None:
        if not self.enabled:
            return
        self._entries[key] = _Entry(generations, self._clock() + self._ttl, result)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
