"""The front door's rule, and its reading of the edge Envoy's /clusters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from switchboard_server.frontdoor.domain import Host, not_serving, serving
from switchboard_server.frontdoor.poller import EdgePoller
from tests.unit.test_boundaries import PACKAGE, wire_imports

EXPOSED = {"a.v1.AService": "a", "b.v1.BService": "b"}
OK = Host("127.0.0.1:1", frozenset())


def _bad(*flags: str, eds: str = "HEALTHY") -> Host:
    return Host("127.0.0.1:2", frozenset(flags), eds)


@pytest.mark.parametrize(
    "host",
    [
        _bad("failed_active_health_check"),
        _bad("failed_active_health_check", "pending_active_hc"),  # not checked yet
        _bad("failed_outlier_check"),  # ejected
        _bad("failed_eds_health"),
        _bad("excluded_via_immediate_hc_fail"),
        _bad(eds="DRAINING"),
        _bad(eds="UNHEALTHY"),
    ],
)
def test_a_host_envoy_sends_no_traffic_is_not_routable(host: Host) -> None:
    assert not host.routable


def test_degraded_and_unknown_hosts_still_take_traffic() -> None:
    assert _bad(eds="DEGRADED").routable
    assert _bad(eds="UNKNOWN").routable
    assert _bad("failed_active_degraded_check").routable


def test_one_routable_replica_makes_a_service_serving() -> None:
    hosts = {"a": [_bad("failed_outlier_check"), OK], "b": [OK]}
    assert serving(EXPOSED, hosts) == {"": True, "a.v1.AService": True, "b.v1.BService": True}


def test_overall_is_serving_only_when_every_exposed_service_is() -> None:
    hosts = {"a": [_bad("failed_active_health_check")] * 2, "b": [OK]}
    assert serving(EXPOSED, hosts) == {"": False, "a.v1.AService": False, "b.v1.BService": True}
    assert serving(EXPOSED, {"b": [OK]})["a.v1.AService"] is False  # cluster not reported
    assert serving({}, {})[""] is False  # nothing exposed is nothing to serve


def test_not_serving_names_every_status() -> None:
    assert not_serving(EXPOSED) == {"": False, "a.v1.AService": False, "b.v1.BService": False}


def test_the_rule_has_no_wire_imports() -> None:
    assert wire_imports(PACKAGE / "frontdoor" / "domain.py") == []


def _clusters(**hosts: dict[str, Any]) -> dict[str, Any]:
    """An Envoy /clusters?format=json document: one host per cluster."""
    return {
        "cluster_statuses": [
            {
                "name": name,
                "host_statuses": [
                    {
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                        "health_status": health,
                    }
                ],
            }
            for name, health in hosts.items()
        ]
    }


def _poller(handler: Any) -> EdgePoller:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return EdgePoller(9901, EXPOSED, client)


async def test_the_poller_reads_the_edges_health_flags() -> None:
    document = _clusters(
        a={"eds_health_status": "HEALTHY"},
        b={"eds_health_status": "HEALTHY", "failed_active_health_check": True},
    )
    seen = []

    def admin(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=document)

    poller = _poller(admin)
    assert await poller.look() == {"": False, "a.v1.AService": True, "b.v1.BService": False}
    assert seen == ["http://127.0.0.1:9901/clusters?format=json"]
    await poller.client.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="no"),
        httpx.Response(200, text="not json"),
        httpx.ConnectError("refused"),
    ],
)
async def test_an_edge_that_cannot_be_asked_means_nothing_is_serving(
    answer: httpx.Response | Exception,
) -> None:
    def admin(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    poller = _poller(admin)
    assert await poller.look() == not_serving(EXPOSED)
    await poller.client.aclose()
