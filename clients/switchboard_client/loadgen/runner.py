"""The open-loop engine: fire each shot at its scheduled instant, record from that instant.

The engine knows nothing of gRPC: it calls ``send(shot, timeout_s) -> Outcome`` (see
:mod:`.grpc_driver`). At most ``plan.concurrency`` sends are in flight; a shot that
finds every slot taken waits for one, and the wait counts in its latency, because a
user would have waited too. Every shot ends by its scheduled start + ``timeout_s`` (+ a
short grace for the transport to report it), so a run lasts at most
``duration_s + timeout_s + grace``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from switchboard_client.loadgen.plan import LoadPlan, Shot, schedule
from switchboard_client.loadgen.report import UNSENT_DEADLINE, Outcome, Recorder

Send = Callable[[Shot, float], Awaitable[Outcome]]
Progress = Callable[[Recorder, float], None]

GRACE_S = 0.5
CLIENT_ERROR = "CLIENT_ERROR"


async def run_load(
    plan: LoadPlan,
    send: Send,
    *,
    progress: Progress | None = None,
    progress_interval_s: float = 1.0,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``plan`` through ``send`` and return the report (see :class:`Recorder`)."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    slots = asyncio.Semaphore(plan.concurrency)
    start = loop.time()

    async def fire(shot: Shot) -> None:
        due = start + shot.offset_s
        deadline = due + plan.timeout_s
        waited = slots.locked()
        try:
            await asyncio.wait_for(slots.acquire(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            now = loop.time()
            recorder.on_done(Outcome(UNSENT_DEADLINE), now - due, now - start, sent=False)
            return
        try:
            recorder.on_sent(waited)
            try:
                async with asyncio.timeout_at(deadline + GRACE_S):
                    outcome = await send(shot, max(0.001, deadline - loop.time()))
            except TimeoutError:
                outcome = Outcome(UNSENT_DEADLINE)
            except Exception:  # a bug in the driver must not stop the run; it is counted
                outcome = Outcome(CLIENT_ERROR)
        finally:
            slots.release()
        now = loop.time()
        recorder.on_done(outcome, now - due, now - start)

    async def tick() -> None:
        while True:
            await asyncio.sleep(progress_interval_s)
            if progress is not None:
                progress(recorder, loop.time() - start)

    ticker = asyncio.create_task(tick()) if progress is not None else None
    try:
        async with asyncio.TaskGroup() as group:
            for shot in schedule(plan):
                delay = start + shot.offset_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                recorder.on_scheduled(shot.offset_s)
                group.create_task(fire(shot))
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    elapsed = loop.time() - start
    if progress is not None:
        progress(recorder, elapsed)
    described = {k: v for k, v in asdict(plan).items() if k != "messages"}
    described["messages"] = len(plan.messages)
    return recorder.report(elapsed, {**described, **(config or {})})


def progress_line(recorder: Recorder, elapsed_s: float, total: int) -> str:
    """One status line: progress, achieved rate, codes so far, p99."""
    rate = recorder.completed / elapsed_s if elapsed_s > 0 else 0.0
    failed = recorder.completed - recorder.codes.get("OK", 0)
    p99 = f"{recorder.p99_ms():.1f}ms" if recorder.completed else "-"
    return (
        f"{elapsed_s:6.1f}s  {recorder.completed}/{total} done  {rate:7.1f}/s  "
        f"in flight {recorder.in_flight}  failed {failed}  degraded {recorder.degraded}  p99 {p99}"
    )
