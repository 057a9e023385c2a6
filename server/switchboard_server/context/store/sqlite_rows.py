"""The SQLite backend's passage rows for hits, held in a bounded LRU by rowid.

A knowledge query ranks from the postings in memory (``sqlite_index``) and then
needs the rows of at most ``limit`` passages (id, document id, title, content, the
document's metadata and time); ``PassageRows`` keeps the rows read so that a query
whose passages were seen (or written) before runs no SQL. Rows change only with
knowledge writes: once a write committed, every passage it removed is forgotten and
every one it added is kept (rowids can be reused); after a write whose outcome is
unknown, everything is forgotten. ``version`` tells a
read that overlapped a write (with reader threads) not to keep what it read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple


class PassageRow(NamedTuple):
    """What a hit shows of a passage (``metadata`` is shared: not to be changed)."""

    passage_id: str
    document_id: str
    title: str
    content: str
    metadata: Mapping[str, str]
    created_at: float


class PassageRows:
    """At most ``max_rows`` passage rows, least recently used out first."""

    def __init__(self, max_rows: int) -> None:
        self._max = max_rows
        self._rows: OrderedDict[int, PassageRow] = OrderedDict()
        self.version = 0

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, rowids: Sequence[int]) -> tuple[dict[int, PassageRow], list[int]]:
        """The rows held of ``rowids`` and the rowids not held."""
        found: dict[int, PassageRow] = {}
        missing: list[int] = []
        rows = self._rows
        for rowid in rowids:
            row = rows.get(rowid)
            if row is None:
                missing.append(rowid)
            else:
                found[rowid] = row
                rows.move_to_end(rowid)
        return found, missing

    def fill(self, version: int, rows: Mapping[int, PassageRow]) -> None:
        """Keep rows read by a read that began at ``version``, unless a write came since."""
        if version == self.version:
            self._keep(rows)

    def _keep(self, rows: Mapping[int, PassageRow]) -> None:
        if self._max <= 0:
            return
        self._rows.update(rows)
        while len(self._rows) > self._max:
            self._rows.popitem(last=False)

    def apply(self, changed: Iterable[int], added: Mapping[int, PassageRow]) -> None:
        """A committed write removed or added the passages ``changed``; ``added`` are
        the rows of those it added (kept, as the newest used)."""
        self.version += 1
        for rowid in changed:
            self._rows.pop(rowid, None)
        self._keep(added)

    def clear(self) -> None:
        """After a write whose outcome is unknown."""
        self.version += 1
        self._rows.clear()
