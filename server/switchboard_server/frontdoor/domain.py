"""The front door's rule: which exposed services are serving, as the edge sees them.

A service is serving while at least one of its replicas is routable from the edge:
Envoy's active health check has not failed it, outlier detection has not ejected it,
and its endpoint status lets Envoy send it traffic. The overall status (the empty
service name) is serving only when every exposed service is: what a probe of "the
front door" needs to know is whether every call it can route can be answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OVERALL = ""
# Envoy's host health flags (admin /clusters) under which it sends a host no traffic.
UNROUTABLE_FLAGS = frozenset(
    {
        "failed_active_health_check",
        "failed_outlier_check",
        "failed_eds_health",
        "excluded_via_immediate_hc_fail",
        "pending_dynamic_removal",
    }
)
# Endpoint statuses Envoy load-balances to (UNKNOWN counts as healthy; DEGRADED is
# used when nothing healthier is left).
ROUTABLE_EDS_STATUSES = frozenset({"HEALTHY", "DEGRADED", "UNKNOWN", ""})


@dataclass(frozen=True)
class Host:
    """One upstream host of an edge cluster, with the health flags Envoy has set."""

    address: str
    flags: frozenset[str]
    eds_status: str = "HEALTHY"

    @property
    def routable(self) -> bool:
        return self.eds_status in ROUTABLE_EDS_STATUSES and not self.flags & UNROUTABLE_FLAGS


def serving(exposed: Mapping[str, str], hosts: Mapping[str, Sequence[Host]]) -> dict[str, bool]:
    """Serving or not, per exposed service name and overall (``""``).

    ``exposed`` maps each service name to the edge cluster that routes it; ``hosts``
    is the edge's view of its clusters. A cluster the edge does not report has no
    routable host.
    """
    by_service = {
        service: any(host.routable for host in hosts.get(cluster, ()))
        for service, cluster in exposed.items()
    }
    return {OVERALL: bool(by_service) and all(by_service.values()), **by_service}


def not_serving(exposed: Mapping[str, str]) -> dict[str, bool]:
    """Every status NOT_SERVING: before the first look at the edge, or when it cannot
    be asked (its admin is down: nothing is known to be routable)."""
    return dict.fromkeys((OVERALL, *exposed), False)
