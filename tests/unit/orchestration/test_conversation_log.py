"""The SQLite conversation log and its page tokens."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard_server.errors import InvalidArgument
from switchboard_server.orchestration.paging import decode_page_token, encode_page_token
from switchboard_server.orchestration.store import SqliteConversationLog
from switchboard_server.orchestration.translate import chunks
from switchboard_server.orchestration.values import Alternative, Intent, Turn


def turn(text: str) -> Turn:
    intent = Intent("alarm/set", 0.75, l1="alarm", alternatives=(Alternative("alarm/query", 0.2),))
    return Turn(-1, text, f"reply to {text}", intent, datetime.now(UTC), "corr")


async def test_turns_are_durable_indexed_and_paged(tmp_path: Path) -> None:
    log = SqliteConversationLog(tmp_path)
    await log.open()
    indices = await asyncio.gather(*(log.append("s1", turn(f"m{i}")) for i in range(5)))
    assert sorted(indices) == [0, 1, 2, 3, 4]
    await log.append("s2", turn("other"))
    await log.close()

    with sqlite3.connect(tmp_path / SqliteConversationLog.FILE_NAME) as raw:
        assert raw.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 6

    reopened = SqliteConversationLog(tmp_path)
    await reopened.open()
    first = await reopened.page("s1", 0, 2)
    assert [t.index for t in first.turns] == [0, 1]
    assert first.next_index == 2
    assert first.total == 5
    assert first.turns[0].intent.alternatives == (Alternative("alarm/query", 0.2),)
    last = await reopened.page("s1", 4, 2)
    assert [t.index for t in last.turns] == [4]
    assert last.next_index is None
    empty = await reopened.page("nobody", 0, 10)
    assert empty.turns == ()
    assert empty.total == 0
    await reopened.close()


def test_page_token_round_trips_and_is_bound_to_its_session() -> None:
    token = encode_page_token("s1", 40)
    assert decode_page_token("s1", token) == 40
    assert decode_page_token("s1", "") == 0
    with pytest.raises(InvalidArgument) as other:
        decode_page_token("s2", token)
    assert other.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        decode_page_token("s1", "not-a-token!")


def test_chunks_join_back_to_the_text() -> None:
    text = "Here is what I found (Switchboard overview): a gRPC mesh for assistants [kb#0]"
    pieces = chunks(text, 16)
    assert "".join(pieces) == text
    assert len(pieces) > 3
    assert chunks("", 10) == []
