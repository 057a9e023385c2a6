"""ResultCache: TTL, generation checks, LRU bound."""

from __future__ import annotations

from switchboard_server.context.cache import ResultCache
from switchboard_server.context.store.base import Generations
from switchboard_server.context.values import ContextResult

RESULT = ContextResult(context="c", sources=(), stats=None)
G = Generations(1, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entry_expires_after_ttl() -> None:
    clock = Clock()
    cache = ResultCache(10, 100, clock)
    cache.put("k", G, RESULT)
    clock.now = 9.9
    assert cache.get("k", G) is RESULT
    clock.now = 10.0
    assert cache.get("k", G) is None
    assert len(cache) == 0


def test_any_generation_change_is_a_miss() -> None:
    cache = ResultCache(10, 100, Clock())
    cache.put("k", G, RESULT)
    assert cache.get("k", Generations(2, 1)) is None
    cache.put("k", G, RESULT)
    assert cache.get("k", Generations(1, 2)) is None


def test_lru_bound_and_disabled_cache() -> None:
    cache = ResultCache(10, 2, Clock())
    for key in ("a", "b"):
        cache.put(key, G, RESULT)
    cache.get("a", G)
    cache.put("c", G, RESULT)
    assert cache.get("b", G) is None
    assert cache.get("a", G) is RESULT
    off = ResultCache(0, 100, Clock())
    off.put("a", G, RESULT)
    assert off.get("a", G) is None
