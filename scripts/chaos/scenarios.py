"""The scenarios: each one disrupts a running :class:`Mesh` while the load runs, and
returns when the disruption is over (the "during" window of the figures)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from scripts.chaos.mesh import Mesh

Step = tuple[str, float, float]  # what, monotonic start, monotonic end
Disrupt = Callable[[Mesh], Awaitable[list[Step] | None]]

STOP_S = 10.0
FAULT_S = 10.0
REDIS_DOWN_S = 3.0
ABORT_PERCENT = 10
DELAY_PERCENT = 50
DELAY_MS = 200


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    disrupt: Disrupt
    duration_s: float  # how long the load runs; the disruption starts after before_s
    target: str  # what the issue asks of it


def kill9(service: str) -> Disrupt:
    async def disrupt(mesh: Mesh) -> list[Step]:
        app = mesh.apps(service)[0]
        pid, start = mesh.pid(app), time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await mesh.wait_serving(app, old_pid=pid)  # the runner restarts it
        return [(f"{app} killed until serving again", start, time.monotonic())]

    return disrupt


def rolling_restart(services: tuple[str, ...]) -> Disrupt:
    """SIGTERM each app of ``services`` in turn; before the next, wait until it serves
    again and every caller's Envoy lists it healthy again (its own sidecar answering
    SERVING is not enough: a caller that has not yet seen it back would have no
    healthy replica left when the next one goes down)."""

    async def disrupt(mesh: Mesh) -> list[Step]:
        steps = []
        for service in services:
            for app in mesh.apps(service):
                pid, start = mesh.pid(app), time.monotonic()
                os.kill(pid, signal.SIGTERM)
                await mesh.wait_serving(app, old_pid=pid)
                await mesh.wait_seen_healthy(app)
                steps.append((f"{app} SIGTERM until its callers see it healthy", start,
                              time.monotonic()))  # fmt: skip
        return steps

    return disrupt


def sigstop(service: str, stop_s: float = STOP_S) -> Disrupt:
    async def disrupt(mesh: Mesh) -> None:
        pid = mesh.pid(mesh.apps(service)[0])
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(stop_s)
        finally:
            os.kill(pid, signal.SIGCONT)

    return disrupt


ABORTS = "http.ingress.fault.aborts_injected"
DELAYS = "http.ingress.fault.delays_injected"


async def fault_injection(mesh: Mesh) -> list[Step]:
    """Abort 10 % of Classify at the classification sidecars (UNAVAILABLE) and delay
    half of the context calls by 200 ms at the context sidecars, for FAULT_S."""
    abort = {"fault.http.abort.abort_percent": ABORT_PERCENT, "fault.http.abort.grpc_status": 14}
    delay = {
        "fault.http.delay.fixed_delay_percent": DELAY_PERCENT,
        "fault.http.delay.fixed_duration_ms": DELAY_MS,
    }
    classification, context = mesh.apps("classification"), mesh.apps("context")
    before = {a: await mesh.counter(a, ABORTS) for a in classification}
    before |= {a: await mesh.counter(a, DELAYS) for a in context}
    start = time.monotonic()
    try:
        for app in classification:
            await mesh.runtime(app, abort)
        for app in context:
            await mesh.runtime(app, delay)
        await asyncio.sleep(FAULT_S)
    finally:
        for app in classification:
            await mesh.runtime(app, {"fault.http.abort.abort_percent": 0})
        for app in context:
            await mesh.runtime(app, {"fault.http.delay.fixed_delay_percent": 0})
    end = time.monotonic()
    steps = [(f"{a}: {await mesh.counter(a, ABORTS) - before[a]} aborts injected", start, end)
             for a in classification]  # fmt: skip
    steps += [(f"{a}: {await mesh.counter(a, DELAYS) - before[a]} delays injected", start, end)
              for a in context]  # fmt: skip
    return steps


async def redis_restart(mesh: Mesh) -> None:
    """Stop redis-server (SIGTERM: it flushes its append-only file), keep it down for
    REDIS_DOWN_S, start it again on the same port and data."""
    assert mesh.redis is not None
    await asyncio.to_thread(mesh.redis.stop)
    await asyncio.sleep(REDIS_DOWN_S)
    await asyncio.to_thread(mesh.redis.start)
    for app in mesh.apps("context"):
        await mesh.wait_serving(app, old_pid=None)


def full(duration_s: float) -> list[Scenario]:
    every = ("classification", "context", "orchestration")
    zero = "0 failed, 0 degraded, 0 lost, 0 doubled"
    return [
        Scenario("kill9-classification", "SIGKILL classification-0", kill9("classification"),
                 duration_s, zero),
        Scenario("kill9-context", "SIGKILL context-0", kill9("context"), duration_s, zero),
        Scenario("kill9-orchestration", "SIGKILL orchestration-0",
                 kill9("orchestration"), duration_s, zero),
        Scenario("rolling-restart",
                 "SIGTERM every app in turn, each waited until its callers see it healthy",
                 rolling_restart(every), duration_s * 2, zero),
        Scenario("sigstop-context", f"SIGSTOP context-0 for {STOP_S:g} s, then SIGCONT",
                 sigstop("context"), duration_s, "0 failed, degraded <= 1.5 s of load"),
        Scenario("sigstop-classification", f"SIGSTOP classification-0 for {STOP_S:g} s",
                 sigstop("classification"), duration_s, "0 failed, degraded <= 1.5 s of load"),
        Scenario("fault-injection",
                 f"abort {ABORT_PERCENT} % at classification, delay {DELAY_PERCENT} % "
                 f"of context by {DELAY_MS} ms, for {FAULT_S:g} s",
                 fault_injection, duration_s, "(no target)"),
        Scenario("redis-restart", f"redis-server down {REDIS_DOWN_S:g} s, then back",
                 redis_restart, duration_s, "0 lost, 0 doubled"),
    ]  # fmt: skip


def quick(duration_s: float) -> list[Scenario]:
    """The bounded subset ``make test`` runs."""
    zero = "0 lost, 0 doubled"
    return [
        Scenario("kill9-context", "SIGKILL context-0", kill9("context"), duration_s, zero),
        Scenario("kill9-orchestration", "SIGKILL orchestration-0", kill9("orchestration"),
                 duration_s, "0 failed, 0 lost, 0 doubled"),
        Scenario("sigterm-context", "SIGTERM each context replica in turn",
                 rolling_restart(("context",)), duration_s * 1.5, zero),
        Scenario("redis-restart", f"redis-server down {REDIS_DOWN_S:g} s, then back",
                 redis_restart, duration_s, zero),
    ]  # fmt: skip
