"""Latencies, codes and per-second rates of a load run, and its JSON report.

Latencies go into HDR histograms (the ``hdrhistogram`` package, extra ``load``) in
microseconds from 1 µs to an hour at 3 significant digits: percentiles stay exact to
0.1 % whatever the number of samples, in constant memory.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

OK = "OK"
UNSENT_DEADLINE = "DEADLINE_EXCEEDED"
LOWEST_US = 1
HIGHEST_US = 3600 * 1_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request ended with: a status code name and, for OK, the degraded flag."""

    code: str
    degraded: bool = False


def _histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _latency(hist: HdrHistogram) -> dict[str, float]:
    if hist.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = round(hist.get_mean_value() / 1000.0, 3)
    return out


@dataclass
class _Second:
    scheduled: int = 0
    completed: int = 0
    ok: int = 0
    max_us: int = 0


@dataclass
class Recorder:
    """Collects every request's outcome; :meth:`report` summarises them."""

    scheduled: int = 0
    sent: int = 0
    in_flight: int = 0
    unsent: int = 0
    queued: int = 0
    completed: int = 0
    degraded: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    all_latency: HdrHistogram = field(default_factory=_histogram)
    ok_latency: HdrHistogram = field(default_factory=_histogram)
    seconds: dict[int, _Second] = field(default_factory=dict)

    def _second(self, at_s: float) -> _Second:
        return self.seconds.setdefault(max(0, math.floor(at_s)), _Second())

    def on_scheduled(self, offset_s: float) -> None:
        self.scheduled += 1
        self._second(offset_s).scheduled += 1

    def on_sent(self, waited_for_slot: bool) -> None:
        self.sent += 1
        self.in_flight += 1
        self.queued += int(waited_for_slot)

    def on_done(
        self, outcome: Outcome, latency_s: float, finished_at_s: float, *, sent: bool = True
    ) -> None:
        """``latency_s`` counts from the scheduled start; ``finished_at_s`` from the run's."""
        if sent:
            self.in_flight -= 1
        else:
            self.unsent += 1
        micros = min(HIGHEST_US, max(LOWEST_US, round(latency_s * 1_000_000)))
        self.completed += 1
        self.codes[outcome.code] += 1
        self.all_latency.record_value(micros)
        second = self._second(finished_at_s)
        second.completed += 1
        second.max_us = max(second.max_us, micros)
        if outcome.code == OK:
            second.ok += 1
            self.ok_latency.record_value(micros)
            self.degraded += int(outcome.degraded)

    def p99_ms(self) -> float:
        return float(self.all_latency.get_value_at_percentile(99.0)) / 1000.0

    def report(self, elapsed_s: float, config: dict[str, Any]) -> dict[str, Any]:
        """The JSON-ready report of the run."""
        last = max(self.seconds, default=-1)
        per_second = []
        for index in range(last + 1):
            s = self.seconds.get(index, _Second())
            per_second.append(
                {
                    "second": index,
                    "scheduled": s.scheduled,
                    "completed": s.completed,
                    "ok": s.ok,
                    "max_ms": s.max_us / 1000.0,
                }
            )
        return {
            "config": config,
            "elapsed_s": round(elapsed_s, 3),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "queued_for_a_slot": self.queued,
            "unsent": self.unsent,
            "completed": self.completed,
            "ok": self.codes.get(OK, 0),
            "failed": self.completed - self.codes.get(OK, 0),
            "degraded": self.degraded,
            "codes": dict(sorted(self.codes.items())),
            "achieved_rate": round(self.completed / elapsed_s, 3) if elapsed_s > 0 else 0.0,
            "latency_ms": _latency(self.all_latency),
            "ok_latency_ms": _latency(self.ok_latency),
            "per_second": per_second,
        }
