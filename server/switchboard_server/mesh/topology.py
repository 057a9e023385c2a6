"""The topology: services, replicas, ports and per-method policy, resolved into a plan.

``load_topology(path)`` reads a topology file (by default the one shipped in this
package, ``topology.yaml``), validates its shape with pydantic models that forbid unknown
keys, and checks it against the generated proto descriptors (an unknown method is an
error, not a silent no-op). Every problem is a :class:`TopologyError` naming the field
path (``services.context.replicas: ...``). ``make_plan(topology, settings, ports=...)``
resolves it into concrete processes and ports; tests pass ``ports=`` (an allocator) to
run on free loopback ports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def default_topology() -> Traversable:
    """The topology shipped as package data: what ``switchboard up`` runs by default."""
    return resources.files(__package__ or "switchboard_server.mesh").joinpath("topology.yaml")


class TopologyError(ValueError):
    """The topology file is inconsistent; the message names the offending entry."""


@dataclass(frozen=True)
class MethodPolicy:
    """How the mesh treats one RPC."""

    timeout_s: float
    idempotent: bool
    per_try_timeout_s: float | None = None  # None: from the settings (routes.per_try_timeout)
    # A write that a caller's Envoy retries like an idempotent method when the request
    # carries its idempotency key in the x-switchboard-request-id header.
    keyed_retry: bool = False


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
    # Methods whose ``admin`` the topology states: True needs the operator identity,
    # False is open to the callers the topology names (docs/security.md).
    admin: Mapping[str, bool] = field(default_factory=dict)

    @property
    def admin_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if self.admin.get(m, False))

    # Variants besides the baseline (``stable``: the service's own replicas and env),
    # each with its own replicas and app env overrides; see :mod:`.rollout.variants`.
    variants: Mapping[str, VariantSpec] = field(default_factory=dict)
    # Methods split between variants by weight at the callers (canary), and mirrored to
    # them (shadow); empty without variants.
    split_methods: tuple[str, ...] = ()
    shadow_methods: tuple[str, ...] = ()

    def policy(self, method: str) -> MethodPolicy:
        return self.overrides.get(method, self.default)

    def variant_names(self) -> tuple[str, ...]:
        """``stable`` first, then the declared variants in file order."""
        return (STABLE, *self.variants)

    def variant_replicas(self, variant: str) -> int:
        return self.replicas if variant == STABLE else self.variants[variant].replicas


STABLE = "stable"


@dataclass(frozen=True)
class VariantSpec:
    """A variant of a service (e.g. a candidate model): its own replicas and app env."""

    replicas: int
    env: Mapping[str, str]


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


def streaming_methods(grpc_service: str) -> frozenset[str]:
    """Methods of a gRPC service that stream a request or a response."""
    module = importlib.import_module(_PB2_MODULES[grpc_service])
    descriptor = module.DESCRIPTOR.services_by_name[grpc_service.rsplit(".", 1)[1]]
    return frozenset(m.name for m in descriptor.methods if m.client_streaming or m.server_streaming)


# -- the file's shape ------------------------------------------------------------------------
# Strict: a port written "8080" or 8080.5 is an error, not silently coerced.
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
Port = Annotated[int, Field(gt=0, lt=65536)]


class _PolicyFile(BaseModel):
    model_config = _STRICT

    timeout_s: float = Field(gt=0)
    idempotent: bool
    per_try_timeout_s: float | None = Field(default=None, gt=0)
    keyed_retry: bool = False


class _OverrideFile(BaseModel):
    """A method's policy: each key left out comes from the service's ``default``."""

    model_config = _STRICT

    timeout_s: float | None = Field(default=None, gt=0)
    idempotent: bool | None = None
    per_try_timeout_s: float | None = Field(default=None, gt=0)
    keyed_retry: bool | None = None
    # Only the operator identity may call it (sidecar RBAC); not a routing policy.
    admin: bool | None = None


class _VariantFile(BaseModel):
    model_config = _STRICT

    replicas: int = Field(default=1, ge=1)
    env: dict[str, str] = Field(default_factory=dict)


class _RolloutFile(BaseModel):
    model_config = _STRICT

    split_methods: list[str] = Field(default_factory=list)
    shadow_methods: list[str] = Field(default_factory=list)


class _ServiceFile(BaseModel):
    model_config = _STRICT

    grpc_service: str
    app_port: Port
    sidecar_port: Port
    admin_port: Port
    metrics_port: Port
    replicas: int = Field(default=1, ge=1)
    calls: list[str] = Field(default_factory=list)
    egress_ports: dict[str, Port] = Field(default_factory=dict)
    default: _PolicyFile
    methods: dict[str, _OverrideFile] = Field(default_factory=dict)
    variants: dict[str, _VariantFile] = Field(default_factory=dict)
    rollout: _RolloutFile | None = None


class _EdgeFile(BaseModel):
    model_config = _STRICT

    routes: list[str] | None = None  # None: every service, in file order


class _TopologyFile(BaseModel):
    model_config = _STRICT

    edge: _EdgeFile | None = None
    services: dict[str, _ServiceFile]


_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "model_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
}


def _field_errors(exc: ValidationError) -> str:
    """One ``path: problem`` per error, the path in the file's own keys."""
    lines = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "topology"
        plain = _PLAIN_MESSAGES.get(error["type"])
        problem = plain or f"{error['msg']} (got {error['input']!r})"
        lines.append(f"{path}: {problem}")
    return "; ".join(lines)


# -- from the file to the topology ----------------------------------------------------------


def _service(name: str, raw: _ServiceFile) -> ServiceSpec:
    where = f"services.{name}"
    try:
        methods = service_methods(raw.grpc_service)
    except TopologyError as exc:
        raise TopologyError(f"{where}.grpc_service: {exc}") from None
    default = MethodPolicy(
        timeout_s=raw.default.timeout_s,
        idempotent=raw.default.idempotent,
        per_try_timeout_s=raw.default.per_try_timeout_s,
        keyed_retry=raw.default.keyed_retry,
    )
    _check_keyed(f"{where}.default", default, None, frozenset())
    streams = streaming_methods(raw.grpc_service)
    overrides = {}
    admin = {}
    for method, policy in raw.methods.items():
        if method not in methods:
            raise TopologyError(f"{where}.methods.{method}: not a method of {raw.grpc_service}")
        if policy.admin is not None:
            admin[method] = policy.admin
        if not policy.model_fields_set - {"admin"}:
            continue  # an access mark only: the method keeps the service's route
        overrides[method] = MethodPolicy(
            timeout_s=default.timeout_s if policy.timeout_s is None else policy.timeout_s,
            idempotent=default.idempotent if policy.idempotent is None else policy.idempotent,
            per_try_timeout_s=(
                default.per_try_timeout_s
                if policy.per_try_timeout_s is None
                else policy.per_try_timeout_s
            ),
            keyed_retry=default.keyed_retry if policy.keyed_retry is None else policy.keyed_retry,
        )
        _check_keyed(f"{where}.methods.{method}", overrides[method], method, streams)
    variants, split, shadow = _variants(where, raw, methods)
    missing = [c for c in raw.calls if c not in raw.egress_ports]
    if missing:
        raise TopologyError(f"{where}.egress_ports: missing {missing}")
    return ServiceSpec(
        name=name,
        grpc_service=raw.grpc_service,
        methods=methods,
        app_port=raw.app_port,
        sidecar_port=raw.sidecar_port,
        admin_port=raw.admin_port,
        metrics_port=raw.metrics_port,
        replicas=raw.replicas,
        calls=tuple(raw.calls),
        egress_ports={c: raw.egress_ports[c] for c in raw.calls},
        default=default,
        overrides=overrides,
        admin=admin,
        variants=variants,
        split_methods=split,
        shadow_methods=shadow,
    )


def _variants(
    where: str, raw: _ServiceFile, methods: tuple[str, ...]
) -> tuple[dict[str, VariantSpec], tuple[str, ...], tuple[str, ...]]:
    """The declared variants and the methods split / mirrored between them."""
    if STABLE in raw.variants:
        raise TopologyError(f"{where}.variants.{STABLE}: the service's own replicas are stable")
    for name in raw.variants:
        if not name.isidentifier() or not name.islower():
            raise TopologyError(f"{where}.variants.{name}: a lower-case name, like candidate")
    rollout = raw.rollout or _RolloutFile()
    if rollout != _RolloutFile() and not raw.variants:
        raise TopologyError(f"{where}.rollout: the service declares no variants")
    for key, names in (
        ("split_methods", rollout.split_methods),
        ("shadow_methods", rollout.shadow_methods),
    ):
        for method in names:
            if method not in methods:
                raise TopologyError(f"{where}.rollout.{key}: {method} is not a method")
    for method in rollout.shadow_methods:
        if method in streaming_methods(raw.grpc_service):
            raise TopologyError(f"{where}.rollout.shadow_methods: {method} streams")
    variants = {
        name: VariantSpec(replicas=v.replicas, env=dict(v.env)) for name, v in raw.variants.items()
    }
    return variants, tuple(rollout.split_methods), tuple(rollout.shadow_methods)


def _check_keyed(
    where: str, policy: MethodPolicy, method: str | None, streams: frozenset[str]
) -> None:
    """``keyed_retry`` is for a non-idempotent unary method: a service default would
    mark every write keyed whether or not it honours a key, an idempotent method is
    retried anyway, and a stream cannot be replayed once it answered."""
    if not policy.keyed_retry:
        return
    if method is None:
        raise TopologyError(f"{where}.keyed_retry: set it per method, on each write")
    if policy.idempotent:
        raise TopologyError(f"{where}.keyed_retry: only for a method with idempotent: false")
    if method in streams:
        raise TopologyError(f"{where}.keyed_retry: {method} streams; a stream is not resent")


def parse_topology(raw: Any) -> Topology:
    """The topology a loaded YAML document describes; :class:`TopologyError` if it is wrong."""
    try:
        parsed = _TopologyFile.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(_field_errors(exc)) from None
    services = {name: _service(name, spec) for name, spec in parsed.services.items()}
    for spec in services.values():
        for callee in spec.calls:
            if callee not in services:
                raise TopologyError(f"services.{spec.name}.calls: unknown service {callee!r}")
    routes = parsed.edge.routes if parsed.edge else None
    edge_routes = tuple(services) if routes is None else tuple(routes)
    for name in edge_routes:
        if name not in services:
            raise TopologyError(f"edge.routes: unknown service {name!r}")
    return Topology(services=services, edge_routes=edge_routes)


def load_topology(path: Path | Traversable | None = None) -> Topology:
    """Read and check a topology file; ``None`` reads the one shipped in the package."""
    source = default_topology() if path is None else path
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(f"{source}: {exc}") from exc
    try:
        return parse_topology(raw)
    except TopologyError as exc:
        raise TopologyError(f"{source}: {exc}") from None


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
    variant: str = STABLE

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def cluster(self) -> str:
        """The callers' cluster this replica is an endpoint of (one per variant)."""
        return variant_cluster(self.service, self.variant)


def variant_cluster(service: str, variant: str) -> str:
    """The stable variant keeps the service's cluster name; others get their own."""
    return service if variant == STABLE else f"{service}-{variant}"


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
        variants = [v for v in spec.variant_names() for _ in range(spec.variant_replicas(v))]
        for i, variant in enumerate(variants):
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
                    variant=variant,
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
