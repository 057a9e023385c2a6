"""The rollout policy on disk: ``<mesh dir>/rollout/policy.json`` and the runtime tree
the callers' sidecars watch (``<mesh dir>/rollout/current``, a symlink).

A change writes a new tree (one file per runtime key, :mod:`.variants`) next to the old
one, points a fresh symlink at it and renames that over ``current``: one atomic swap,
which Envoy's disk runtime layer watches and reloads without a restart. The policy
file is written first (atomically too), so what ``rollout status`` reports and what a
restarted sidecar loads are the same.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from switchboard_server.mesh.rollout.variants import RUNTIME_SUBDIR, runtime_values
from switchboard_server.mesh.topology import Topology, TopologyError


@dataclass
class ServicePolicy:
    """Percentages per non-stable variant: of the traffic (canary) and mirrored (shadow)."""

    weights: dict[str, int] = field(default_factory=dict)
    shadow: dict[str, int] = field(default_factory=dict)
    # Why the last change happened: "set", "shadow", "promote", "rollback", "auto-rollback: ..."
    last_change: str = ""


def policy_path(root: Path) -> Path:
    return root / "policy.json"


def read_policies(root: Path) -> dict[str, ServicePolicy]:
    try:
        raw = json.loads(policy_path(root).read_text())
    except FileNotFoundError:
        return {}
    return {name: ServicePolicy(**value) for name, value in raw.items()}


def check_policy(topology: Topology, service: str, policy: ServicePolicy) -> None:
    spec = topology.services.get(service)
    if spec is None or not spec.variants:
        raise TopologyError(f"{service}: not a service with variants")
    for kind, values in (("weights", policy.weights), ("shadow", policy.shadow)):
        for variant, percent in values.items():
            if variant not in spec.variants:
                raise TopologyError(f"{service}: unknown variant {variant!r} in {kind}")
            if not 0 <= percent <= 100:
                raise TopologyError(f"{service}.{variant}: {percent} is not a percentage")
    if sum(policy.weights.values()) > 100:
        raise TopologyError(f"{service}: the weights add up to more than 100")


def write_policies(root: Path, topology: Topology, policies: dict[str, ServicePolicy]) -> None:
    """Persist the policies and swap the runtime tree the sidecars watch."""
    for service, policy in policies.items():
        check_policy(topology, service, policy)
    if not root.exists():
        root.mkdir(parents=True)
        _world_readable(root)
    tmp = policy_path(root).with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v.__dict__ for k, v in policies.items()}, indent=2))
    _world_readable(tmp)
    os.replace(tmp, policy_path(root))
    version = root / f"v{time.time_ns()}"
    version.mkdir()  # empty when no service has variants: `current` never dangles
    for name, spec in topology.services.items():
        if not spec.variants:
            continue
        policy = policies.get(name, ServicePolicy())
        for key, value in runtime_values(spec, policy.weights, policy.shadow).items():
            path = version / RUNTIME_SUBDIR / Path(*key.split("."))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(value))
    for path in [version, *version.rglob("*")]:
        _world_readable(path)
    link = root / "current.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, root / "current")
    for old in root.glob("v*"):
        if old.name != version.name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _world_readable(path: Path) -> None:
    """Whatever the writer's umask: a Compose rendering's directory is read by the
    sidecars' own uid through a bind mount (the policy holds nothing secret)."""
    path.chmod(0o755 if path.is_dir() else 0o644)


def ensure_runtime(root: Path, topology: Topology) -> None:
    """Before the sidecars start: the tree of the persisted policy (or the default, all
    traffic on stable), dropping what no longer fits the topology."""
    policies = {}
    for name, policy in read_policies(root).items():
        try:
            check_policy(topology, name, policy)
        except TopologyError:
            continue
        policies[name] = policy
    write_policies(root, topology, policies)
