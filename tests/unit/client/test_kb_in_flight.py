"""``switchboard kb ingest`` keeps ``--in-flight`` calls going at a time, and stops at the
first failure."""

from __future__ import annotations

import asyncio

import pytest

from switchboard_client.commands.kb import _in_flight


async def test_calls_overlap_up_to_the_limit_and_each_item_goes_once() -> None:
    running = peak = 0
    done: list[int] = []

    async def work(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(item)

    await _in_flight(range(10), 3, work)
    assert peak == 3
    assert sorted(done) == list(range(10))


async def test_the_first_failure_stops_the_rest_and_is_raised() -> None:
    started: list[int] = []

    async def work(item: int) -> None:
        started.append(item)
        if item == 2:
            raise ConnectionError("batch 2")
        await asyncio.sleep(10)  # the others are still in flight when 2 fails

    with pytest.raises(ConnectionError, match="batch 2"):
        await asyncio.wait_for(_in_flight(range(100), 3, work), 5)
    assert sorted(started) == [0, 1, 2]
