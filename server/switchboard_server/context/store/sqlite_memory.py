"""The SQLite backend's session memory mirrored in memory: a bounded LRU of sessions.

The ``memory`` table stays the truth; ``MemoryMirror`` holds the whole memory of
recently read sessions (records oldest first, terms already split), so GetContext
reads a session without SQL. A session is loaded on a miss and changed only by the
outcome of a write: each memory write is ``begin``-ed when submitted and ``settle``-d
when its transaction resolved (whether or not its caller still waits). A committed
write is applied to the mirrored session as SQLite applied it (appends, then the
oldest entries of a type over its cap evicted; clears); a failed one drops the
session (its outcome is not known here). A load is kept only when no write of the
session was pending or settled while it read (``token``/``fill``), so a read that
overlapped a write never leaves an old state behind. This holds because one process
owns the file (enforced by ``switchboard up``).

``generation`` is the session's cache-validity counter (``base.Generations``):
bumped when a write settles, i.e. once it is visible.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Collection, Mapping, Sequence

from switchboard_server.context.values import MemoryRecord, MemoryType

Token = tuple[int, bool]


class MemoryMirror:
    """Sessions' memory records (oldest first), at most ``max_entries`` in all."""

    def __init__(self, caps: Mapping[MemoryType, int], max_entries: int) -> None:
        self._caps = dict(caps)
        self._max = max_entries
        self._sessions: OrderedDict[str, list[MemoryRecord]] = OrderedDict()
        self._size = 0
        self._pending: Counter[str] = Counter()
        self._generations: dict[str, int] = {}

    def __len__(self) -> int:
        """Records held."""
        return self._size

    def generation(self, session_id: str) -> int:
        return self._generations.get(session_id, 0)

    def get(self, session_id: str) -> list[MemoryRecord] | None:
        """The session's records (oldest first; not to be changed), None on a miss."""
        records = self._sessions.get(session_id)
        if records is not None:
            self._sessions.move_to_end(session_id)
        return records

    def token(self, session_id: str) -> Token:
        """Taken before a load: ``fill`` keeps the load only if it is still current."""
        return self.generation(session_id), session_id in self._pending

    def fill(self, session_id: str, records: list[MemoryRecord], token: Token) -> None:
        """Keep what a load that began at ``token`` read, unless a write came since
        (or was pending) or it is too large to hold."""
        if token != (self.generation(session_id), False) or session_id in self._pending:
            return
        if self._max <= 0 or len(records) > self._max or session_id in self._sessions:
            return
        self._sessions[session_id] = records
        self._size += len(records)
        self._shrink()

    def begin(self, session_id: str) -> None:
        """A write of the session was submitted."""
        self._pending[session_id] += 1

    def settle(
        self,
        session_id: str,
        *,
        appended: Sequence[MemoryRecord] = (),
        counts: Mapping[MemoryType, int] | None = None,
        cleared: Collection[MemoryType] = (),
        failed: bool = False,
    ) -> None:
        """A write of the session resolved: committed (``appended`` records, with the
        session's ``counts`` after it, or the ``cleared`` types) or ``failed`` (outcome
        unknown: the session is dropped). A session not held is taken from an append
        that shows it holds nothing else (its counts are the appended records')."""
        self._pending[session_id] -= 1
        if self._pending[session_id] <= 0:
            del self._pending[session_id]
        self._generations[session_id] = self.generation(session_id) + 1
        records = self._sessions.get(session_id)
        if failed:
            self._drop(session_id)
            return
        if records is None:
            if appended and counts is not None and self._max > 0:
                kept = self._capped(list(appended), appended)
                if sum(counts.values()) == len(kept) and len(kept) <= self._max:
                    self._sessions[session_id] = kept
                    self._size += len(kept)
                    self._shrink()
            return
        before = len(records)
        if cleared:
            records[:] = [r for r in records if r.type not in cleared]
        if appended:
            records.extend(appended)
            kept = self._capped(records, appended)
            if kept is not records:
                records[:] = kept
        self._size += len(records) - before
        if len(records) > self._max:
            self._drop(session_id)
        else:
            self._shrink()

    def _capped(
        self, records: list[MemoryRecord], appended: Sequence[MemoryRecord]
    ) -> list[MemoryRecord]:
        """``records`` (oldest first) without the oldest entries of an appended type over
        its cap, as the append's DELETE left the table."""
        counts = Counter(r.type for r in records)
        over = {t: counts[t] - self._caps[t] for t in {r.type for r in appended}}
        if all(n <= 0 for n in over.values()):
            return records
        kept = []
        for record in records:
            if over.get(record.type, 0) > 0:
                over[record.type] -= 1
            else:
                kept.append(record)
        return kept

    def clear(self) -> None:
        self._sessions.clear()
        self._size = 0

    def _drop(self, session_id: str) -> None:
        records = self._sessions.pop(session_id, None)
        if records is not None:
            self._size -= len(records)

    def _shrink(self) -> None:
        while self._size > self._max and self._sessions:
            _, records = self._sessions.popitem(last=False)
            self._size -= len(records)
