"""One thread that runs a store's blocking work in order, awaited from the event loop.

It does what a one-worker ``ThreadPoolExecutor`` with ``loop.run_in_executor`` does,
with a leaner hand-off: a job is one ``SimpleQueue.put`` and one
``call_soon_threadsafe`` back, with no ``concurrent.futures.Future`` chained to an
asyncio one. The group commit hands every batch's COMMIT to this thread, so the
hand-off is paid once per batch, and the event loop's thread, which every RPC shares,
does less work per hand-off than through the executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class WriterThread:
    """Runs jobs one at a time, in the order given, on one thread named ``name``.

    The thread starts with the first job and ends with ``close()``. A job whose
    caller stopped waiting (cancelled) still runs to its end, as with an executor.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the thread; returns its result or raises its exception."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, job))
        return await future

    def close(self) -> None:
        """Let queued jobs finish, then end the thread (idempotent)."""
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            loop, future, job = item
            try:
                outcome: Any = job()
                failed = False
            except BaseException as exc:  # handed to the waiter, as an executor does
                outcome, failed = exc, True
            # A closed loop has no one left waiting for the outcome.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, outcome, failed)


def _settle(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.done():  # the waiter was cancelled
        return
    if isinstance(outcome, StopIteration):  # a future cannot hold one (asyncio's rule)
        future.set_exception(RuntimeError(f"job raised {outcome!r}"))
    elif failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
