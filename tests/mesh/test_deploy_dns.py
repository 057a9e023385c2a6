"""The callee clusters of Compose and Kubernetes (names re-resolved by Envoy's DNS
cluster, every address an endpoint) on real Envoys: each replica behind a name is
health-checked on its own and takes traffic, and one going away does not fail calls."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from switchboard.classification.v1 import classification_service_pb2 as cls_pb
from switchboard.classification.v1 import classification_service_pb2_grpc as cls_grpc
from switchboard_server.mesh.addresses import AddressPlan
from switchboard_server.mesh.settings import MeshSettings
from switchboard_server.mesh.topology import Plan, Topology
from tests.support.mesh_harness import running_mesh, sub_topology, wait_healthy

pytestmark = pytest.mark.mesh


def by_name(plan: Plan) -> AddressPlan:
    """Like a Compose render: each replica's sidecar by a name (here `localhost`)."""
    return AddressPlan(
        listen_host=plan.host,
        app_host=plan.host,
        endpoints={
            name: tuple(("localhost", r.sidecar_port) for r in group)
            for name, group in plan.replicas.items()
        },
        dns=True,
        dns_refresh_s=1.0,
    )


async def test_dns_clusters_health_check_and_balance_each_replica(
    topology: Topology, tmp_path: Path
) -> None:
    topo = sub_topology(topology, {"classification": 2})
    async with running_mesh(topo, MeshSettings(), tmp_path, addresses=by_name) as mesh:
        await wait_healthy(mesh, "classification", 2)
        hosts = (await mesh.edge_hosts())["classification"]
        ports = {r.sidecar_port for r in mesh.plan.replicas["classification"]}
        assert {int(h[0].rsplit(":", 1)[1]) for h in hosts} == ports
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            for i in range(20):
                await stub.Classify(cls_pb.ClassifyRequest(text=f"hi {i}"), timeout=5)
        stats = await mesh.edge_stats()
        assert stats["cluster.classification.upstream_rq_total"] >= 20
        served = {name: module.state.calls["Classify"] for name, module in mesh.modules.items()}
        assert len(served) == 2
        assert all(count > 0 for count in served.values()), served
        # A replica that goes away is left: its host fails health checks and the calls
        # go on to the other one.
        gone = mesh.plan.replicas["classification"][1].name
        await mesh.apps[gone].stop(0)
        async with grpc.aio.insecure_channel(mesh.edge) as channel:
            stub = cls_grpc.ClassificationServiceStub(channel)
            for i in range(10):
                await stub.Classify(cls_pb.ClassifyRequest(text=f"again {i}"), timeout=5)
