"""``switchboard render --target k8s`` (in progress)."""

from __future__ import annotations

from switchboard_server.config import Settings
from switchboard_server.mesh.topology import Topology


class K8sRender:
    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.topology = topology
        self.settings = settings

    def files(self) -> dict[str, str]:
        raise NotImplementedError("the Kubernetes target is not rendered yet")
