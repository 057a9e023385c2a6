"""`switchboard load` against real in-process services: the report matches what happened."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from switchboard_client import ConnectConfig, OrchestrationClient
from switchboard_client.loadgen import ChatDriver, LoadPlan, run_load
from switchboard_server.config import ServiceName
from switchboard_server.testing import start_services


async def test_a_short_run_reports_what_the_server_recorded(
    tmp_path: Path, model_cache: Path
) -> None:
    plan = LoadPlan(rate=40, duration_s=1.5, sessions=4, timeout_s=5, session_prefix="ld")
    async with start_services(tmp_path, model_cache=model_cache) as running:
        target = running.target(ServiceName.ORCHESTRATION)
        async with ChatDriver(ConnectConfig(target), connections=2) as driver:
            report = await run_load(plan, driver.send)
        async with OrchestrationClient(ConnectConfig(target)) as client:
            turns = [(await client.get_conversation(f"ld-{i}")).total_turns for i in range(4)]
        metrics = running.servers[ServiceName.ORCHESTRATION].runtime.metrics
        served = metrics.get_sample_value("switchboard_chat_turns_total", {"degraded": "false"})
    assert report["scheduled"] == report["completed"] == 60
    assert report["codes"] == {"OK": 60}
    assert report["degraded"] == 0
    assert turns == [15, 15, 15, 15]
    assert served == 60
    assert [s["scheduled"] for s in report["per_second"][:2]] == [40, 20]
    assert 20 <= report["achieved_rate"] <= 45
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["latency_ms"]["p99"] <= report["latency_ms"]["max"] < 5000


async def test_the_cli_counts_degraded_turns_and_prints_progress(
    tmp_path: Path, model_cache: Path
) -> None:
    """With context stopped every turn is answered but degraded; the CLI says so."""
    async with start_services(tmp_path, model_cache=model_cache) as running:
        await running.stop(ServiceName.CONTEXT)
        report_path = tmp_path / "report.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "switchboard_client.cli",
            "load",
            "--target",
            running.target(ServiceName.ORCHESTRATION),
            "--rate",
            "20",
            "--duration",
            "1",
            "--progress",
            "--report",
            str(report_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    report = json.loads(report_path.read_text())
    assert out == b""
    assert report["codes"] == {"OK": 20}
    assert report["degraded"] == 20
    assert report["config"]["target"] == running.target(ServiceName.ORCHESTRATION)
    assert "20/20 done" in err.decode()
    assert "degraded 20" in err.decode()
