"""Run a scenario under load and measure it: turns sent, failed, degraded, lost,
doubled, and p50/p99 latency before, during and after the disruption."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import asdict
from typing import Any

from hdrh.histogram import HdrHistogram

from scripts.chaos.audit import audit, committed
from scripts.chaos.load import OK, Turn, TurnLog, connect, mark, plan
from scripts.chaos.mesh import Mesh
from scripts.chaos.scenarios import Scenario
from switchboard_client import ConnectConfig, ContextClient, SwitchboardError
from switchboard_client.loadgen import run_load

SETTLE_S = 1.0
BURST = 300
BURST_DEADLINE_S = 1.5
BURST_RETRY_DEADLINE_S = 10.0


def _percentiles(turns: list[Turn]) -> dict[str, float | None]:
    if not turns:
        return {"p50_ms": None, "p99_ms": None}
    hist = HdrHistogram(1, 3_600_000_000, 3)
    for turn in turns:
        hist.record_value(max(1, round(turn.latency_s * 1_000_000)))
    return {
        "p50_ms": round(hist.get_value_at_percentile(50) / 1000, 1),
        "p99_ms": round(hist.get_value_at_percentile(99) / 1000, 1),
    }


def _summary(turns: list[Turn]) -> dict[str, Any]:
    codes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for turn in turns:
        codes[turn.code] = codes.get(turn.code, 0) + 1
        for reason in turn.degraded_by:
            reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "sent": len(turns),
        "failed": sum(1 for t in turns if t.code != OK),
        "degraded": sum(1 for t in turns if t.degraded),
        "codes": dict(sorted(codes.items())),
        "degraded_reasons": dict(sorted(reasons.items())),
    }


async def run_scenario(
    mesh: Mesh,
    scenario: Scenario,
    *,
    rate: float,
    before_s: float,
    sessions: int,
    timeout_s: float,
) -> dict[str, Any]:
    """The load for ``scenario.duration_s``, the disruption from ``before_s`` on, then
    the audit; the figures as a JSON-ready dict."""
    async with connect(mesh.edge, timeout_s) as client:
        log = TurnLog(client, run=f"{scenario.name}-{uuid.uuid4().hex[:6]}")
        window: dict[str, float] = {}
        steps: list[dict[str, Any]] = []
        error = ""

        async def disrupt() -> None:
            nonlocal error
            await asyncio.sleep(before_s)
            window["start"] = time.monotonic() - log.started
            try:
                for what, t0, t1 in await scenario.disrupt(mesh) or []:
                    steps.append(
                        {"what": what, "at_s": t0 - log.started, "until_s": t1 - log.started}
                    )
            except Exception as exc:  # reported, and the audit still runs
                error = f"{type(exc).__name__}: {exc}"
            window["end"] = time.monotonic() - log.started

        load_plan = plan(rate, scenario.duration_s, sessions, log.run, timeout_s)
        log.started = time.monotonic()
        load, _ = await asyncio.gather(run_load(load_plan, log.send), disrupt())
        await asyncio.sleep(SETTLE_S)
        async with ContextClient(ConnectConfig(mesh.context_app, timeout_s=10)) as memory:
            result = await audit(client, log.turns, memory)
    start, end = window.get("start", 0.0), window.get("end", 0.0)
    phases = {
        "before": [t for t in log.turns if t.offset_s < start],
        "during": [t for t in log.turns if start <= t.offset_s < end],
        "after": [t for t in log.turns if t.offset_s >= end],
    }
    for step in steps:  # the turns scheduled while each step lasted
        during = [t for t in log.turns if step["at_s"] <= t.offset_s < step["until_s"]]
        failed = _summary(during)
        step.update(
            at_s=round(step["at_s"], 2),
            until_s=round(step["until_s"], 2),
            sent=failed["sent"],
            failed=failed["failed"],
            degraded=failed["degraded"],
        )
    return {
        "scenario": scenario.name,
        "what": scenario.what,
        "steps": steps,
        "target": scenario.target,
        "rate": rate,
        "load_s": scenario.duration_s,
        "disruption_s": [round(start, 2), round(end, 2)],
        "error": error,
        **_summary(log.turns),
        **asdict(result),
        "latency": {name: _percentiles(turns) for name, turns in phases.items()},
        "failed_by_phase": {n: _summary(t)["failed"] for n, t in phases.items()},
        "degraded_by_phase": {n: _summary(t)["degraded"] for n, t in phases.items()},
        "achieved_rate": load["achieved_rate"],
    }


async def run_burst(mesh: Mesh, *, count: int = BURST) -> dict[str, Any]:
    """``count`` concurrent Chats with a short deadline; each failure is retried once
    with its request_id and a generous deadline. The audit must find no turn twice."""
    run = f"burst-{uuid.uuid4().hex[:6]}"
    turns = [
        Turn(i, f"chaos-{run}-{i % 60}", f"tell me a joke [{run}#{i}]", str(uuid.uuid4()), 0.0)
        for i in range(count)
    ]
    async with connect(mesh.edge, BURST_RETRY_DEADLINE_S) as client:
        started = time.monotonic()

        async def chat(turn: Turn, timeout_s: float) -> None:
            t0 = time.monotonic()
            try:
                response = await client.chat(
                    turn.message,
                    session_id=turn.session_id,
                    request_id=turn.request_id,
                    timeout_s=timeout_s,
                )
            except SwitchboardError as exc:
                turn.code = exc.code.name
            else:
                mark(turn, response)
            turn.latency_s = time.monotonic() - t0

        await asyncio.gather(*(chat(t, BURST_DEADLINE_S) for t in turns))
        first = _summary(turns)
        retried = [t for t in turns if t.code != OK]
        first["failed_but_committed"] = await committed(client, retried)
        await asyncio.gather(*(chat(t, BURST_RETRY_DEADLINE_S) for t in retried))
        elapsed = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        async with ContextClient(ConnectConfig(mesh.context_app, timeout_s=10)) as memory:
            result = await audit(client, turns, memory)
    return {
        "scenario": "burst-retry-by-key",
        "what": f"{count} concurrent Chats, {BURST_DEADLINE_S:g} s deadline; each failure "
        "retried once with its request_id",
        "target": "0 doubled",
        "first_try": first,
        "retried": len(retried),
        "elapsed_s": round(elapsed, 2),
        **_summary(turns),
        **asdict(result),
        "latency": {"during": _percentiles(turns)},
    }


async def settle(mesh: Mesh, seconds: float) -> None:
    """Let outlier ejections and restarts of the previous scenario run out."""
    with contextlib.suppress(TimeoutError):
        for service in ("classification", "context", "orchestration"):
            for app in mesh.apps(service):
                await mesh.wait_serving(app, old_pid=None, timeout_s=30)
    await asyncio.sleep(seconds)
