"""WriterThread: jobs run in order on one named thread, outcomes reach the awaiting
coroutine (results and exceptions), a cancelled waiter does not stop the thread, and
close() ends the thread after the queued jobs."""

from __future__ import annotations

import asyncio
import functools
import threading
import time

import pytest

from switchboard_server.context.store.writer_thread import WriterThread


async def test_jobs_run_in_order_on_one_named_thread() -> None:
    thread = WriterThread("test-writer")
    ran: list[tuple[int, str, int]] = []

    def job(n: int) -> int:
        me = threading.current_thread()
        ran.append((n, me.name, me.ident or 0))
        return n * n

    try:
        results = await asyncio.gather(*(thread.run(functools.partial(job, n)) for n in range(20)))
    finally:
        thread.close()
    assert results == [n * n for n in range(20)]
    assert [n for n, _, _ in ran] == list(range(20))
    assert {(name, ident) for _, name, ident in ran} == {(ran[0][1], ran[0][2])}
    assert ran[0][1] == "test-writer"
    assert ran[0][2] != threading.get_ident()


async def test_a_job_exception_reaches_its_waiter_and_the_thread_goes_on() -> None:
    thread = WriterThread("test-writer")

    def fail() -> None:
        raise ValueError("bad row")

    def stop() -> None:
        raise StopIteration  # an asyncio future cannot hold this one

    try:
        with pytest.raises(ValueError, match="bad row"):
            await thread.run(fail)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(thread.run(stop), timeout=5)
        assert await thread.run(lambda: "next") == "next"
    finally:
        thread.close()


async def test_a_cancelled_waiter_leaves_its_job_running_and_the_thread_serving() -> None:
    thread = WriterThread("test-writer")
    started, done = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.05)
        done.set()

    try:
        waiter = asyncio.ensure_future(thread.run(slow))
        await asyncio.to_thread(started.wait, 5)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await thread.run(lambda: 7) == 7  # runs after ``slow``, which finished
        assert done.is_set()
    finally:
        thread.close()


async def test_close_waits_for_queued_jobs_then_refuses_new_ones() -> None:
    thread = WriterThread("test-writer")
    ran: list[int] = []
    await thread.run(lambda: ran.append(0))
    worker = next(t for t in threading.enumerate() if t.name == "test-writer")
    pending = [asyncio.ensure_future(thread.run(functools.partial(ran.append, n))) for n in (1, 2)]
    await asyncio.sleep(0)  # the jobs are queued
    thread.close()
    assert not worker.is_alive()
    assert ran == [0, 1, 2]
    await asyncio.gather(*pending)
    thread.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await thread.run(lambda: None)
