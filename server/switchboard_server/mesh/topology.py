"""The topology: services, replicas, ports and per-method policy, resolved into a plan.

``load_topology(path)`` reads ``envoy/topology.yaml`` and checks it against the
generated proto descriptors (an unknown method is an error, not a silent no-op).
``plan(topology, settings, replicas=...)`` resolves it into concrete processes and
ports; tests pass ``ports=`` (an allocator) to run on free loopback ports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from switchboard_server.mesh.settings import MeshSettings

# The generated module holding each service's descriptor (its proto package).
_PB2_MODULES = {
    "switchboard.classification.v1.ClassificationService": (
        "switchboard.classification.v1.classification_service_pb2"
    ),
    "switchboard.context.v1.ContextService": "switchboard.context.v1.context_service_pb2",
    "switchboard.orchestration.v1.OrchestrationService": (
        "switchboard.orchestration.v1.orchestration_service_pb2"
    ),
}


class TopologyError(ValueError):
    """The topology file is inconsistent; the message names the offending entry."""


@dataclass(frozen=True)
class MethodPolicy:
    """How the mesh treats one RPC."""

    timeout_s: float
    idempotent: bool


@dataclass(frozen=True)
class ServiceSpec:
    """One service as declared in the topology file."""

    name: str
    grpc_service: str
    methods: tuple[str, ...]  # every method, from the descriptors
    app_port: int
    sidecar_port: int
    admin_port: int
    metrics_port: int
    replicas: int
    calls: tuple[str, ...]
    egress_ports: Mapping[str, int]
    default: MethodPolicy
    overrides: Mapping[str, MethodPolicy]

    def policy(self, method: str) -> MethodPolicy:
        return self.overrides.get(method, self.default)


@dataclass(frozen=True)
class Topology:
    services: Mapping[str, ServiceSpec]
    edge_routes: tuple[str, ...]

    def with_replicas(self, replicas: Mapping[str, int]) -> Topology:
        services = dict(self.services)
        for name, count in replicas.items():
            if name not in services:
                raise TopologyError(f"--replicas: unknown service {name!r}")
            if count < 1:
                raise TopologyError(f"--replicas: {name} needs at least 1 replica")
            services[name] = replace(services[name], replicas=count)
        return replace(self, services=services)


def service_methods(grpc_service: str) -> tuple[str, ...]:
    """Method names of a gRPC service, read from the generated descriptors."""
    module_name = _PB2_MODULES.get(grpc_service)
    if module_name is None:
        raise TopologyError(f"unknown grpc_service {grpc_service!r}")
    module = importlib.import_module(module_name)
    short = grpc_service.rsplit(".", 1)[1]
    descriptor = module.DESCRIPTOR.services_by_name[short]
    return tuple(m.name for m in descriptor.methods)


def _policy(raw: Any, where: str, base: MethodPolicy | None = None) -> MethodPolicy:
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a mapping")
    unknown = set(raw) - {"timeout_s", "idempotent"}
    if unknown:
        raise TopologyError(f"{where}: unknown keys {sorted(unknown)}")
    timeout = raw.get("timeout_s", base.timeout_s if base else None)
    idempotent = raw.get("idempotent", base.idempotent if base else None)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise TopologyError(f"{where}.timeout_s: must be a positive number")
    if not isinstance(idempotent, bool):
        raise TopologyError(f"{where}.idempotent: must be true or false")
    return MethodPolicy(timeout_s=float(timeout), idempotent=idempotent)


def _service(name: str, raw: Any) -> ServiceSpec:
    where = f"services.{name}"
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a mapping")
    grpc_service = str(raw.get("grpc_service", ""))
    methods = service_methods(grpc_service)
    default = _policy(raw.get("default", {}), f"{where}.default")
    overrides = {}
    for method, policy in (raw.get("methods") or {}).items():
        if method not in methods:
            raise TopologyError(f"{where}.methods.{method}: not a method of {grpc_service}")
        overrides[method] = _policy(policy, f"{where}.methods.{method}", default)
    ports = {}
    for key in ("app_port", "sidecar_port", "admin_port", "metrics_port"):
        value = raw.get(key)
        if not isinstance(value, int) or not 0 < value < 65536:
            raise TopologyError(f"{where}.{key}: must be a port number")
        ports[key] = value
    calls = tuple(raw.get("calls") or ())
    egress = dict(raw.get("egress_ports") or {})
    missing = [c for c in calls if c not in egress]
    if missing:
        raise TopologyError(f"{where}.egress_ports: missing {missing}")
    return ServiceSpec(
        name=name,
        grpc_service=grpc_service,
        methods=methods,
        replicas=int(raw.get("replicas", 1)),
        calls=calls,
        egress_ports={c: int(egress[c]) for c in calls},
        default=default,
        overrides=overrides,
        **ports,
    )


def parse_topology(raw: Any) -> Topology:
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise TopologyError("topology: expected a mapping with 'services'")
    services = {name: _service(name, spec) for name, spec in raw["services"].items()}
    for spec in services.values():
        for callee in spec.calls:
            if callee not in services:
                raise TopologyError(f"services.{spec.name}.calls: unknown service {callee!r}")
    edge_routes = tuple((raw.get("edge") or {}).get("routes") or services)
    for name in edge_routes:
        if name not in services:
            raise TopologyError(f"edge.routes: unknown service {name!r}")
    return Topology(services=services, edge_routes=edge_routes)


def load_topology(path: Path) -> Topology:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(f"{path}: {exc}") from exc
    return parse_topology(raw)


# -- the resolved plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    """One app process and its sidecar, with concrete ports."""

    service: str
    index: int
    app_port: int
    sidecar_port: int
    admin_port: int
    metrics_port: int
    egress_ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"


@dataclass(frozen=True)
class Plan:
    """Every process of the mesh with its ports: what the renderer and runner use."""

    topology: Topology
    host: str
    edge_port: int
    edge_admin_port: int
    frontdoor_port: int
    replicas: Mapping[str, tuple[Replica, ...]]

    def all_replicas(self) -> list[Replica]:
        return [r for group in self.replicas.values() for r in group]


PortAllocator = Callable[[str, int], int]  # (purpose, default) -> port


def make_plan(
    topology: Topology, settings: MeshSettings, ports: PortAllocator | None = None
) -> Plan:
    """Resolve ports; ``ports`` (purpose, default) -> port lets tests pick free ones."""

    def port(purpose: str, default: int) -> int:
        return ports(purpose, default) if ports else default

    stride = settings.replica_port_stride
    replicas: dict[str, tuple[Replica, ...]] = {}
    for spec in topology.services.values():
        group = []
        for i in range(spec.replicas):
            off = i * stride
            group.append(
                Replica(
                    service=spec.name,
                    index=i,
                    app_port=port(f"{spec.name}-{i}.app", spec.app_port + off),
                    sidecar_port=port(f"{spec.name}-{i}.sidecar", spec.sidecar_port + off),
                    admin_port=port(f"{spec.name}-{i}.admin", spec.admin_port + off),
                    metrics_port=port(f"{spec.name}-{i}.metrics", spec.metrics_port + off),
                    egress_ports={
                        callee: port(f"{spec.name}-{i}.egress.{callee}", p + off)
                        for callee, p in spec.egress_ports.items()
                    },
                )
            )
        replicas[spec.name] = tuple(group)
    return Plan(
        topology=topology,
        host=settings.host,
        edge_port=port("edge", settings.edge_port),
        edge_admin_port=port("edge.admin", settings.edge_admin_port),
        frontdoor_port=port("frontdoor", settings.frontdoor_port),
        replicas=replicas,
    )
