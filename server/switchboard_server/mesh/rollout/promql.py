"""The rollout figures from Prometheus instead of the sidecars' admin ports (Compose
and Kubernetes, where the CLI cannot reach every sidecar; what Flagger does).

Over the scrape config the deployments render (``deploy/compose.py``: every sidecar's
``/stats/prometheus`` and every app's ``/metrics``, labelled ``service``; on
Kubernetes the ServiceMonitors give the same ``service`` label), per variant cluster:

* calls and gRPC failures: Envoy's grpc stats of the callers' sidecars,
  ``envoy_cluster_grpc_<...>_total`` / ``_failure`` (Envoy's tag extraction keeps the
  method in the name) by ``envoy_cluster_name``, summed over ``service=~<callers>``;
* latency: ``histogram_quantile`` of ``envoy_cluster_upstream_rq_time_bucket``;
* the apps' ``switchboard_classification_variant_*`` and the comparator's
  ``switchboard_rollout_shadow_*`` by their ``variant`` label.

Each figure twice, in one evaluation instant: over the window (``increase`` and
``rate`` over ``[window]``, extrapolated by Prometheus to the window's edges, so not
whole numbers) and since start (the counters' current sums).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import httpx

from switchboard_server.mesh.rollout.status import (
    CLUSTER_LABEL,
    QUANTILES,
    RQ_TIME_BUCKET,
    VariantStats,
    add_app_sample,
)
from switchboard_server.mesh.topology import Topology, variant_cluster

CALLER_LABEL = "service"  # the scrape config's label for the service a sidecar serves
APP_METRICS = (
    ("switchboard_classification_variant_verdicts_total", "variant, traffic, scope"),
    ("switchboard_classification_variant_confidence_sum", "variant"),
    ("switchboard_classification_variant_confidence_bucket", "variant, le"),
    ("switchboard_rollout_shadow_compared_total", "variant"),
    ("switchboard_rollout_shadow_agreed_total", "variant, level"),
    ("switchboard_rollout_shadow_unmatched_total", "variant"),
)
TIMEOUT_S = 10.0


class PrometheusError(Exception):
    """Prometheus did not answer a query (unreachable, or a bad query)."""


@dataclass(frozen=True)
class Figures:
    window: dict[str, VariantStats]  # over the last ``window_s``
    total: dict[str, VariantStats]  # since start
    window_s: float


def _selector(topology: Topology, service: str) -> str:
    spec = topology.services[service]
    callers = sorted(s.name for s in topology.services.values() if service in s.calls)
    clusters = sorted(variant_cluster(service, v) for v in spec.variant_names())
    return f'{CALLER_LABEL}=~"{"|".join(callers)}",{CLUSTER_LABEL}=~"{"|".join(clusters)}"'


def queries(topology: Topology, service: str, window_s: float) -> dict[str, str]:
    """Every query by a key ``<what>:<window|total>``; the figures of :func:`collect`."""
    sel = _selector(topology, service)
    rng = f"[{max(1, round(window_s))}s]"
    out: dict[str, str] = {}
    for kind, wrap in (("window", lambda m: f"increase({m}{rng})"), ("total", lambda m: m)):
        for what, suffix in (("calls", "total"), ("failures", "failure")):
            metric = f'{{__name__=~"envoy_cluster_grpc_.+_{suffix}",{sel}}}'
            out[f"{what}:{kind}"] = f"sum by ({CLUSTER_LABEL}) ({wrap(metric)})"
        for name, by in APP_METRICS:
            out[f"{name}:{kind}"] = f"sum by ({by}) ({wrap(name)})"
    buckets = f"{RQ_TIME_BUCKET}{{{sel}}}"
    for q in QUANTILES:
        over = f"rate({buckets}{rng})"
        for kind, vector in (("window", over), ("total", buckets)):
            out[f"p{q}:{kind}"] = (
                f"histogram_quantile({q}, sum by ({CLUSTER_LABEL}, le) ({vector}))"
            )
    return out


async def _query(
    client: httpx.AsyncClient, url: str, query: str, at: float
) -> list[tuple[dict[str, str], float]]:
    try:
        response = await client.get(
            f"{url.rstrip('/')}/api/v1/query",
            params={"query": query, "time": f"{at:.3f}"},
            timeout=TIMEOUT_S,
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PrometheusError(f"{url}: {exc}") from exc
    if body.get("status") != "success":
        raise PrometheusError(f"{url}: {body.get('error', body)} (query: {query})")
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


async def collect(url: str, topology: Topology, service: str, window_s: float) -> Figures:
    """The window's and since-start figures of every variant of ``service``."""
    spec = topology.services[service]
    clusters = {variant_cluster(service, v): v for v in spec.variant_names()}
    figures = {k: {v: VariantStats(v) for v in spec.variant_names()} for k in ("window", "total")}
    todo = queries(topology, service, window_s)
    at = time.time()
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(*(_query(client, url, q, at) for q in todo.values()))
    for key, result in zip(todo, answers, strict=True):
        what, kind = key.rsplit(":", 1)
        stats = figures[kind]
        for labels, value in result:
            variant = stats.get(clusters.get(labels.get(CLUSTER_LABEL, ""), ""))
            if what in ("calls", "failures") and variant is not None:
                setattr(variant, what, round(value))
            elif what.startswith("p") and variant is not None and not math.isnan(value):
                setattr(variant, "p50_ms" if what == "p0.5" else "p99_ms", value)
            else:
                add_app_sample(stats, what, labels, value)
    return Figures(figures["window"], figures["total"], window_s)
