"""Reads the edge Envoy's admin ``/clusters`` and says what is serving.

Each look reads the health flags of the edge's clusters and applies the rule of
:mod:`.domain`. An unreachable admin means nothing is known to be routable: every
status NOT_SERVING until it answers again. Changes are logged, once each.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import structlog

from switchboard_server.frontdoor.domain import Host, not_serving, serving
from switchboard_server.mesh.envoy import cluster_hosts

log = structlog.get_logger(__name__)

Statuses = dict[str, bool]


class EdgePoller:
    """The edge's view of its clusters as serving statuses of the exposed services."""

    def __init__(
        self, admin_port: int, exposed: Mapping[str, str], client: httpx.AsyncClient
    ) -> None:
        self.admin_port = admin_port
        self.exposed = dict(exposed)  # service name -> the edge cluster routing it
        self.client = client
        self.last: Statuses = {}
        self._reachable: bool | None = None

    async def look(self) -> Statuses:
        """Serving or not, per exposed service and overall (``""``), as of now."""
        try:
            raw = await cluster_hosts(self.client, self.admin_port)
        except (httpx.HTTPError, ValueError) as exc:
            if self._reachable is not False:
                log.warning(
                    "frontdoor.edge_unreachable", admin_port=self.admin_port, error=str(exc)
                )
            self._reachable = False
            statuses = not_serving(self.exposed)
        else:
            self._reachable = True
            hosts = {
                cluster: [Host(addr, frozenset(flags), eds) for addr, flags, eds in members]
                for cluster, members in raw.items()
            }
            statuses = serving(self.exposed, hosts)
        for service, now in statuses.items():
            if self.last.get(service) != now:
                log.info("frontdoor.status", service=service or "(overall)", serving=now)
        self.last = statuses
        return statuses
