"""``switchboard rollout``: change a service's split between variants at run time, and
compare the variants side by side.

The policy is a file the callers' sidecars watch (:mod:`.state`); nothing
restarts. The comparison reads two sources, both labelled by variant:

* the callers' sidecars (Envoy admin): per variant cluster, calls, gRPC failures and
  the latency histogram's buckets, summed over every caller (what a user of that variant
  waited; quantiles by :mod:`.latency`, so a window's p99 is the window's own);
* the variants' apps (Prometheus ``/metrics``): verdicts by traffic (live or shadow)
  and scope (out-of-scope rate), and the confidence distribution.

``verdict`` is the plain reading of one comparison, and what ``rollout watch`` acts on:
it rolls the candidate back (weight and shadow to 0) when its error rate or its p99
exceeds stable's by the margins in the settings, over a window of calls.
:mod:`.promql` reads the same figures from Prometheus instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from switchboard_server.mesh.envoy import ADMIN_TIMEOUT_S, admin_url
from switchboard_server.mesh.rollout import latency
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.state import MeshState
from switchboard_server.mesh.topology import STABLE, Topology, variant_cluster

QUANTILES = (0.5, 0.99)
# Envoy's request time per upstream cluster, in its Prometheus format (ms)
RQ_TIME_BUCKET = "envoy_cluster_upstream_rq_time_bucket"
CLUSTER_LABEL = "envoy_cluster_name"
RQ_TIME_FILTER = r"^cluster\.[^.]+\.upstream_rq_time$"  # Envoy's name, before the tags


@dataclass
class VariantStats:
    """One variant's figures (counters are totals since start; see :func:`delta`)."""

    variant: str
    calls: int = 0  # live calls through the callers' sidecars
    failures: int = 0  # of those, answered with a gRPC error or not answered
    p50_ms: float | None = None
    p99_ms: float | None = None
    live_verdicts: int = 0  # from the app
    shadow_verdicts: int = 0
    out_of_scope: int = 0  # live and shadow
    confidence_sum: float = 0.0
    confidence_buckets: dict[float, float] = field(default_factory=dict)
    compared: int = 0  # shadow answers joined with stable's (the comparator)
    agreed_intent: int = 0
    agreed_l1: int = 0
    unmatched: int = 0
    latency_buckets: latency.Buckets = field(default_factory=dict)  # ms, cumulative

    def set_quantiles(self) -> None:
        """p50 and p99 from :attr:`latency_buckets` (Prometheus's ``histogram_quantile``)."""
        self.p50_ms, self.p99_ms = (latency.quantile(q, self.latency_buckets) for q in QUANTILES)

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def out_of_scope_rate(self) -> float:
        verdicts = self.live_verdicts + self.shadow_verdicts
        return self.out_of_scope / verdicts if verdicts else 0.0

    @property
    def intent_agreement(self) -> float | None:
        return self.agreed_intent / self.compared if self.compared else None

    @property
    def l1_agreement(self) -> float | None:
        return self.agreed_l1 / self.compared if self.compared else None

    @property
    def mean_confidence(self) -> float:
        verdicts = self.live_verdicts + self.shadow_verdicts
        return self.confidence_sum / verdicts if verdicts else 0.0


def delta(now: VariantStats, before: VariantStats) -> VariantStats:
    """The figures of a window: counters and latency buckets as differences, so p50
    and p99 are those of the window's calls alone."""
    window = VariantStats(
        variant=now.variant,
        calls=now.calls - before.calls,
        failures=now.failures - before.failures,
        live_verdicts=now.live_verdicts - before.live_verdicts,
        shadow_verdicts=now.shadow_verdicts - before.shadow_verdicts,
        out_of_scope=now.out_of_scope - before.out_of_scope,
        confidence_sum=now.confidence_sum - before.confidence_sum,
        compared=now.compared - before.compared,
        agreed_intent=now.agreed_intent - before.agreed_intent,
        agreed_l1=now.agreed_l1 - before.agreed_l1,
        unmatched=now.unmatched - before.unmatched,
        latency_buckets=latency.subtract(now.latency_buckets, before.latency_buckets),
    )
    window.set_quantiles()
    return window


def caller_admins(state: MeshState, topology: Topology, service: str) -> list[int]:
    """Admin ports of the sidecars of every service that calls ``service``."""
    callers = [s.name for s in topology.services.values() if service in s.calls]
    return [
        int(p.endpoints["admin"].rsplit(":", 1)[1])
        for p in state.processes
        if "admin" in p.endpoints
        and p.name.endswith(".sidecar")
        and any(p.name.startswith(f"{c}-") for c in callers)
    ]


def app_metrics(state: MeshState, service: str) -> list[str]:
    """The ``/metrics`` URLs of every app of ``service`` (all variants)."""
    urls = [
        p.endpoints["metrics"]
        for p in state.processes
        if p.role == "app" and p.name.startswith(f"{service}-") and "metrics" in p.endpoints
    ]
    # the comparator's agreement counts
    urls += [p.endpoints["metrics"] for p in state.processes if p.role == "comparator"]
    return urls


async def collect(state: MeshState, topology: Topology, service: str) -> dict[str, VariantStats]:
    spec = topology.services[service]
    stats = {v: VariantStats(v) for v in spec.variant_names()}
    clusters = {variant_cluster(service, v): v for v in spec.variant_names()}
    async with httpx.AsyncClient() as client:
        envoys = await asyncio.gather(
            *(_envoy_stats(client, port) for port in caller_admins(state, topology, service))
        )
        apps = await asyncio.gather(
            *(_app_text(client, url) for url in app_metrics(state, service))
        )
    for counters, buckets in envoys:
        for name, value in counters.items():
            parts = name.split(".")
            if len(parts) < 4 or parts[0] != "cluster" or parts[1] not in clusters:
                continue
            variant = stats[clusters[parts[1]]]
            if parts[2] == "grpc" and parts[-1] == "total":
                variant.calls += value
            elif parts[2] == "grpc" and parts[-1] == "failure":
                variant.failures += value
        for cluster, cluster_buckets in buckets.items():
            if cluster in clusters:  # summed over every caller replica
                latency.add(stats[clusters[cluster]].latency_buckets, cluster_buckets)
    for text in apps:
        _add_app_metrics(stats, text)
    for variant in stats.values():
        variant.set_quantiles()
    return stats


async def _envoy_stats(
    client: httpx.AsyncClient, port: int
) -> tuple[dict[str, int], dict[str, latency.Buckets]]:
    """One sidecar's counters, and its request-time buckets per cluster."""
    try:
        response = await client.get(admin_url(port, "/stats?format=json"), timeout=ADMIN_TIMEOUT_S)
        response.raise_for_status()
        histograms = await client.get(
            admin_url(port, "/stats"),
            params={"format": "prometheus", "filter": RQ_TIME_FILTER},
            timeout=ADMIN_TIMEOUT_S,
        )
        histograms.raise_for_status()
    except httpx.HTTPError:
        return {}, {}
    counters: dict[str, int] = {}
    for stat in response.json().get("stats", []):
        if isinstance(stat.get("value"), int):
            counters[stat["name"]] = stat["value"]
    return counters, rq_time_buckets(histograms.text)


def rq_time_buckets(text: str) -> dict[str, latency.Buckets]:
    """``envoy_cluster_upstream_rq_time_bucket`` per cluster from Envoy's Prometheus text."""
    buckets: dict[str, latency.Buckets] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == RQ_TIME_BUCKET and CLUSTER_LABEL in sample.labels:
                cluster = buckets.setdefault(sample.labels[CLUSTER_LABEL], {})
                le = float(sample.labels["le"])
                cluster[le] = cluster.get(le, 0.0) + sample.value
    return buckets


async def _app_text(client: httpx.AsyncClient, url: str) -> str:
    try:
        response = await client.get(url, timeout=ADMIN_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError:
        return ""
    return response.text


def _add_app_metrics(stats: dict[str, VariantStats], text: str) -> None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            add_app_sample(stats, sample.name, sample.labels, sample.value)


def add_app_sample(
    stats: dict[str, VariantStats], name: str, labels: dict[str, str], value: float
) -> None:
    """One sample of the apps' or the comparator's metrics into its variant's figures
    (also fed by :mod:`.promql`, whose window values are not whole numbers)."""
    variant = stats.get(labels.get("variant", ""))
    if variant is None:
        return
    n = round(value)
    if name == "switchboard_classification_variant_verdicts_total":
        if labels.get("traffic") == "shadow":
            variant.shadow_verdicts += n
        else:
            variant.live_verdicts += n
        if labels.get("scope") == "out":
            variant.out_of_scope += n
    elif name == "switchboard_rollout_shadow_compared_total":
        variant.compared += n
    elif name == "switchboard_rollout_shadow_unmatched_total":
        variant.unmatched += n
    elif name == "switchboard_rollout_shadow_agreed_total":
        if labels.get("level") == "intent":
            variant.agreed_intent += n
        else:
            variant.agreed_l1 += n
    elif name == "switchboard_classification_variant_confidence_sum":
        variant.confidence_sum += value
    elif name == "switchboard_classification_variant_confidence_bucket":
        le = float(labels["le"])
        variant.confidence_buckets[le] = variant.confidence_buckets.get(le, 0.0) + value


Rollback = Callable[[str], None]  # how ``watch`` applies a rollback, given the reason


@dataclass(frozen=True)
class Verdict:
    ok: bool  # False: roll back
    judged: bool  # enough calls to say anything
    text: str


def verdict(stats: dict[str, VariantStats], variant: str, settings: MeshSettings) -> Verdict:
    """The candidate against stable, by the margins of the settings."""
    stable, candidate = stats[STABLE], stats[variant]
    n = settings.rollout_min_requests
    if candidate.calls < n or stable.calls < n:
        return Verdict(
            True,
            False,
            f"{variant}: not enough live calls to judge "
            f"({candidate.calls} vs {stable.calls} on stable; {n} each needed)",
        )
    err_margin = candidate.error_rate - stable.error_rate
    if err_margin > settings.rollout_max_error_rate_margin:
        return Verdict(
            False,
            True,
            f"{variant}: WORSE - error rate {candidate.error_rate:.1%} vs "
            f"{stable.error_rate:.1%} on stable; roll back",
        )
    slower = (
        candidate.p99_ms is not None
        and stable.p99_ms is not None
        and candidate.p99_ms - stable.p99_ms > settings.rollout_max_p99_margin_ms
    )
    if slower:
        return Verdict(
            False,
            True,
            f"{variant}: WORSE - p99 {candidate.p99_ms or 0:.0f} ms vs "
            f"{stable.p99_ms or 0:.0f} ms on stable; roll back",
        )
    verdicts = candidate.live_verdicts + candidate.shadow_verdicts
    stable_verdicts = stable.live_verdicts + stable.shadow_verdicts
    oos_margin = candidate.out_of_scope_rate - stable.out_of_scope_rate
    if (
        min(verdicts, stable_verdicts) >= n
        and oos_margin > settings.rollout_max_out_of_scope_margin
    ):
        return Verdict(
            False,
            True,
            f"{variant}: WORSE - out of scope {candidate.out_of_scope_rate:.1%} vs "
            f"{stable.out_of_scope_rate:.1%} on stable; roll back",
        )
    if candidate.compared >= n:
        agreement = candidate.agreed_intent / candidate.compared
        if agreement < settings.rollout_min_agreement:
            return Verdict(
                False,
                True,
                f"{variant}: WORSE - agrees with stable on {agreement:.1%} of "
                f"{candidate.compared} shadowed calls; roll back",
            )
    return Verdict(
        True,
        True,
        f"{variant}: OK - error rate, p99, out-of-scope rate and agreement within the "
        f"margins of stable ({candidate.calls} and {stable.calls} calls)",
    )


def _below(stats: VariantStats, le: float) -> str:
    """Share of verdicts with a confidence at most ``le`` (a histogram bucket bound)."""
    total = stats.confidence_buckets.get(float("inf"), 0.0)
    if not total:
        return "-"
    return f"{stats.confidence_buckets.get(le, 0.0) / total:.1%}"


def table(stats: dict[str, VariantStats], policy: dict[str, Any], title: str = "") -> str:
    """Side by side, one column per variant; ``title`` says over what (a window, or
    since start)."""
    variants = list(stats)

    def fmt(value: float | None, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    rows = [
        (
            "weight %",
            [str(policy["weights"].get(v, 0)) if v != STABLE else "rest" for v in variants],
        ),
        ("shadow %", [str(policy["shadow"].get(v, 0)) if v != STABLE else "-" for v in variants]),
        ("live calls", [str(stats[v].calls) for v in variants]),
        ("errors", [str(stats[v].failures) for v in variants]),
        ("error rate", [f"{stats[v].error_rate:.1%}" for v in variants]),
        ("p50 ms", [fmt(stats[v].p50_ms, "{:.1f}") for v in variants]),
        ("p99 ms", [fmt(stats[v].p99_ms, "{:.1f}") for v in variants]),
        ("verdicts live", [str(stats[v].live_verdicts) for v in variants]),
        ("verdicts shadow", [str(stats[v].shadow_verdicts) for v in variants]),
        ("out of scope", [f"{stats[v].out_of_scope_rate:.1%}" for v in variants]),
        ("mean confidence", [f"{stats[v].mean_confidence:.3f}" for v in variants]),
        ("confidence < 0.5", [_below(stats[v], 0.5) for v in variants]),
        ("shadow compared", [str(stats[v].compared) if v != STABLE else "-" for v in variants]),
        ("agree: intent", [fmt(stats[v].intent_agreement, "{:.1%}") for v in variants]),
        ("agree: l1", [fmt(stats[v].l1_agreement, "{:.1%}") for v in variants]),
    ]
    width = max(len(title), *(len(r[0]) for r in rows)) + 2
    cols = [max(12, len(v) + 2) for v in variants]
    lines = [title.ljust(width) + "".join(v.rjust(c) for v, c in zip(variants, cols, strict=True))]
    for label, values in rows:
        lines.append(
            label.ljust(width) + "".join(x.rjust(c) for x, c in zip(values, cols, strict=True))
        )
    return "\n".join(lines)
