"""Latency quantiles from cumulative histogram buckets, the way Prometheus's
``histogram_quantile`` computes them.

Envoy exports ``cluster.<name>.upstream_rq_time`` (milliseconds) as cumulative buckets
(``envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name, le}`` in its Prometheus
format). Buckets add up across the callers' sidecars and subtract between two readings,
so a window's quantile is the quantile of the window's bucket deltas: what the calls of
that window waited, not what every call since start waited (Envoy's own
``computed_quantiles`` are the latter, and hide a candidate that turns slow after an
hour of good traffic).

Within a bucket the quantile is a linear interpolation between its bounds, assuming
the observations spread evenly in it (Prometheus's assumption; the lowest bucket starts
at 0), so a figure is only as precise as the bucket it falls in. A rank in the ``+Inf``
bucket answers the highest finite bound.
"""

from __future__ import annotations

import math

Buckets = dict[float, float]  # upper bound (``le``, ms) -> cumulative count


def add(into: Buckets, other: Buckets) -> None:
    """Sum ``other`` into ``into`` (two sidecars' readings of the same cluster)."""
    for le, count in other.items():
        into[le] = into.get(le, 0.0) + count


def subtract(now: Buckets, before: Buckets) -> Buckets:
    """The buckets of a window: ``now`` minus ``before`` per bound (a counter that went
    down, a restarted sidecar, counts from zero again, as Prometheus's ``increase``)."""
    window: Buckets = {}
    for le, count in now.items():
        previous = before.get(le, 0.0)
        window[le] = count - previous if count >= previous else count
    return window


def quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile (0..1) of cumulative ``buckets``, None without observations.

    Prometheus's ``histogram_quantile``: rank = q * total; the first bucket whose
    cumulative count reaches the rank holds it; linear interpolation between that
    bucket's lower and upper bound."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within 0..1")
    bounds = sorted(buckets)
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return None  # Prometheus: NaN without a +Inf bucket
    counts = [buckets[b] for b in bounds]
    for i in range(1, len(counts)):  # cumulative counts never go down
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]  # in +Inf: the highest finite bound
    lower, below = (bounds[index - 1], counts[index - 1]) if index > 0 else (0.0, 0.0)
    upper, count = bounds[index], counts[index] - below
    if index == 0 and upper <= 0:
        return upper
    if count <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / count
