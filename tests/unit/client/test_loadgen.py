"""The load generator's schedule, report and open-loop engine, with fake senders."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from switchboard_client import cli
from switchboard_client.loadgen import LoadPlan, Outcome, Shot, read_messages, run_load
from switchboard_client.loadgen.plan import schedule
from tests.unit.test_boundaries import wire_imports

LOADGEN = Path(__file__).resolve().parents[3] / "clients" / "switchboard_client" / "loadgen"


def test_the_schedule_is_open_loop_evenly_spaced_and_rotates_sessions() -> None:
    plan = LoadPlan(rate=50, duration_s=2, sessions=3, session_prefix="s")
    shots = list(schedule(plan))
    assert len(shots) == plan.total == 100
    assert [s.offset_s for s in shots[:3]] == [0.0, 0.02, 0.04]
    assert shots[-1].offset_s == pytest.approx(1.98)
    assert [s.session_id for s in shots[:4]] == ["s-0", "s-1", "s-2", "s-0"]
    assert shots == list(schedule(plan))  # deterministic for a seed


def test_poisson_arrivals_keep_the_mean_rate() -> None:
    plan = LoadPlan(rate=100, duration_s=20, arrival="poisson", seed=7)
    offsets = [s.offset_s for s in schedule(plan)]
    assert offsets == sorted(offsets)
    assert offsets[-1] == pytest.approx(20, rel=0.1)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(offsets)}
    assert len(gaps) > 100  # not evenly spaced


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate", 0), ("duration_s", -1), ("concurrency", 0), ("sessions", 0), ("messages", ())],
)
def test_a_bad_plan_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"LoadPlan.{field}"):
        LoadPlan(**{"rate": 10, "duration_s": 1, field: value})  # type: ignore[arg-type]


def test_a_message_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "mix.txt"
    path.write_text("# mix\nhello there\n\n  what time is it  \n")
    assert read_messages(path) == ("hello there", "what time is it")
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no messages"):
        read_messages(path)


async def test_the_report_counts_codes_degraded_and_rates() -> None:
    async def send(shot: Shot, timeout_s: float) -> Outcome:
        assert 0 < timeout_s <= 2.0
        if shot.seq % 10 == 0:
            return Outcome("UNAVAILABLE")
        return Outcome("OK", degraded=shot.seq % 10 == 1)

    plan = LoadPlan(rate=100, duration_s=1.5, timeout_s=2.0)
    report = await run_load(plan, send)
    assert report["scheduled"] == report["sent"] == report["completed"] == 150
    assert report["codes"] == {"OK": 135, "UNAVAILABLE": 15}
    assert (report["ok"], report["failed"], report["degraded"]) == (135, 15, 15)
    assert sum(s["scheduled"] for s in report["per_second"]) == 150
    assert [s["scheduled"] for s in report["per_second"]] == [100, 50]
    assert sum(s["completed"] for s in report["per_second"]) == 150
    assert 1.4 <= report["elapsed_s"] < 2.5
    assert report["achieved_rate"] == pytest.approx(150 / report["elapsed_s"], rel=0.01)
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert report["config"]["rate"] == 100
    json.dumps(report)


async def test_a_stalled_server_shows_in_latency_from_the_scheduled_start() -> None:
    """Coordinated omission avoided: with one slot, requests queued behind a 0.5 s stall
    count the wait. Timed from their actual send they would all look instant."""
    stall = asyncio.Event()

    async def send(shot: Shot, timeout_s: float) -> Outcome:
        if shot.seq == 10:  # the server freezes for 0.5 s on this one
            await asyncio.sleep(0.5)
            stall.set()
        return Outcome("OK")

    plan = LoadPlan(rate=100, duration_s=1.0, concurrency=1, timeout_s=5.0)
    report = await run_load(plan, send)
    assert stall.is_set()
    latency = report["latency_ms"]
    assert report["codes"] == {"OK": 100}
    assert report["queued_for_a_slot"] >= 40
    # shots 11..59 were due during the stall and waited 490 ms .. 10 ms for it
    assert latency["max"] >= 480
    assert latency["p90"] >= 200
    assert latency["mean"] >= 80  # timed from the send, about 5 ms


async def test_the_concurrency_cap_bounds_in_flight_and_deadlines_end_waiting() -> None:
    in_flight = peak = 0

    async def send(shot: Shot, timeout_s: float) -> Outcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.3)
        finally:
            in_flight -= 1
        return Outcome("OK")

    # 2 slots, 0.3 s each: about 7 turns/s are served; the rest wait out 0.5 s unsent
    plan = LoadPlan(rate=50, duration_s=1.0, concurrency=2, timeout_s=0.5)
    report = await run_load(plan, send)
    assert peak == 2
    assert report["completed"] == 50
    assert report["unsent"] == report["codes"]["DEADLINE_EXCEEDED"] > 30
    assert report["sent"] == report["codes"]["OK"] == 50 - report["unsent"]
    assert report["elapsed_s"] < 1.0 + 0.5 + 0.6


async def test_a_sender_that_hangs_is_cut_at_its_deadline() -> None:
    async def send(shot: Shot, timeout_s: float) -> Outcome:
        await asyncio.sleep(60)
        return Outcome("OK")

    report = await run_load(LoadPlan(rate=20, duration_s=0.5, timeout_s=0.2), send)
    assert report["codes"] == {"DEADLINE_EXCEEDED": 10}
    assert report["elapsed_s"] < 0.5 + 0.2 + 0.6 + 0.3


@pytest.mark.parametrize("module", ["plan", "report", "runner", "__init__"])
def test_only_the_driver_speaks_grpc(module: str) -> None:
    found = wire_imports(LOADGEN / f"{module}.py")
    if module == "__init__":
        found = [name for name in found if "grpc_driver" not in name]
    assert found == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "0"], "LoadPlan.rate"),
        (["--connections", "0"], "connections"),
        (["--messages", "/nonexistent/mix.txt"], "mix.txt"),
    ],
)
def test_the_command_refuses_bad_options_with_exit_1(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["load", *argv])
    assert exited.value.code == 1
    assert message in capsys.readouterr().err
