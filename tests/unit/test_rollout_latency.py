"""Per-window latency: quantiles from histogram buckets (Prometheus's
``histogram_quantile``), summed over callers, subtracted between readings, the verdict
that catches a candidate slow only in the latest window, and the window ``watch``
keeps for ``status``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from switchboard_server.mesh.rollout import latency
from switchboard_server.mesh.rollout.lastwindow import load_window, save_window
from switchboard_server.mesh.rollout.status import VariantStats, delta, rq_time_buckets, verdict
from switchboard_server.mesh.settings import MeshSettings

INF = math.inf
# Envoy's default bucket bounds (ms), the ones its Prometheus output carries
ENVOY_BOUNDS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def _cumulative(per_bucket: dict[float, int]) -> latency.Buckets:
    """Envoy-style cumulative buckets from observations per bucket (by upper bound)."""
    out: latency.Buckets = {}
    running = 0.0
    for le in (*ENVOY_BOUNDS, INF):
        running += per_bucket.get(le, 0)
        out[float(le)] = running
    return out


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # rank 25 of 100 falls in (1, 5] which holds 50 from a count of 0: 1 + 4 * 25/50
        (0.25, {1.0: 0, 5.0: 50, 10.0: 100, INF: 100}, 3.0),
        (0.5, {1.0: 0, 5.0: 50, 10.0: 100, INF: 100}, 5.0),
        # rank 99: 49 into (5, 10] which holds 50: 5 + 5 * 49/50
        (0.99, {1.0: 0, 5.0: 50, 10.0: 100, INF: 100}, 9.9),
        # the lowest bucket starts at 0
        (0.5, {10.0: 100, INF: 100}, 5.0),
        # a rank in +Inf answers the highest finite bound
        (0.99, {10.0: 90, INF: 100}, 10.0),
    ],
)
def test_quantile_interpolates_like_prometheus(
    q: float, buckets: latency.Buckets, expected: float
) -> None:
    assert latency.quantile(q, buckets) == pytest.approx(expected)


def test_quantile_needs_observations_and_an_inf_bucket() -> None:
    assert latency.quantile(0.99, {1.0: 0, INF: 0}) is None
    assert latency.quantile(0.99, {1.0: 5, 10.0: 10}) is None
    with pytest.raises(ValueError, match="is not within"):
        latency.quantile(99, {1.0: 5, INF: 10})


def test_buckets_sum_over_callers_and_subtract_per_window() -> None:
    text = "\n".join(
        [
            "# TYPE envoy_cluster_upstream_rq_time histogram",
            'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="c",le="1"} 3',
            'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="c",le="5"} 7',
            'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="c",le="+Inf"} 8',
            'envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="c"} 20',
            'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="c"} 8',
            "",
        ]
    )
    parsed = rq_time_buckets(text)
    assert parsed == {"c": {1.0: 3.0, 5.0: 7.0, INF: 8.0}}
    both: latency.Buckets = {}
    latency.add(both, parsed["c"])
    latency.add(both, parsed["c"])  # a second caller replica
    assert both == {1.0: 6.0, 5.0: 14.0, INF: 16.0}
    assert latency.subtract(both, parsed["c"]) == parsed["c"]
    # a restarted sidecar counts from zero: its readings are the window's
    assert latency.subtract({1.0: 1.0, INF: 2.0}, both) == {1.0: 1.0, INF: 2.0}


def _stats(variant: str, calls: int, per_bucket: dict[float, int]) -> VariantStats:
    stats = VariantStats(variant, calls=calls, latency_buckets=_cumulative(per_bucket))
    stats.set_quantiles()
    return stats


def test_a_candidate_slow_only_in_the_second_window_is_caught() -> None:
    """An hour of good traffic (100,000 calls under 5 ms each), then a window where the
    candidate's 200 calls take ~700 ms: cumulative p99 still says 5 ms; the window's says
    995 ms, and the verdict rolls back on it."""
    settings = MeshSettings(rollout_min_requests=50)
    hour = {
        "stable": _stats("stable", 100_000, {5: 100_000}),
        "candidate": _stats("candidate", 100_000, {5: 100_000}),
    }
    later = {
        "stable": _stats("stable", 100_200, {5: 100_200}),
        "candidate": _stats("candidate", 100_200, {5: 100_000, 1000: 200}),
    }
    # since start: the slow calls are 0.2 % of the candidate's, under its p99
    assert (later["candidate"].p99_ms or 0) <= 5.0
    assert verdict(later, "candidate", settings).ok is True  # the blind spot
    window = {name: delta(later[name], hour[name]) for name in later}
    assert window["candidate"].calls == 200
    # rank 198 of 200, all in (500, 1000]: 500 + 500 * 198/200
    assert window["candidate"].p99_ms == pytest.approx(995.0)
    assert (window["stable"].p99_ms or 0) <= 5.0
    result = verdict(window, "candidate", settings)
    assert (result.ok, "p99" in result.text) == (False, True)


def test_watch_keeps_its_latest_window_for_status(tmp_path: Path) -> None:
    window = {
        "stable": _stats("stable", 120, {5: 120}),
        "candidate": _stats("candidate", 30, {5: 10, 500: 20}),
    }
    save_window(tmp_path, "classification", window)
    loaded = load_window(tmp_path, "classification", max_age_s=60)
    assert loaded is not None
    again, age = loaded
    assert 0 <= age < 60
    assert again == window  # buckets (with +Inf) and quantiles survive the round trip
    assert load_window(tmp_path, "classification", max_age_s=-1) is None  # too old
    assert load_window(tmp_path, "context", max_age_s=60) is None  # no watch there
