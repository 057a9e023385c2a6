"""Variants of a service at its callers' sidecars: a sticky weighted split and shadowing.

A service that declares variants (``classification`` ``stable`` and ``candidate``) has
one cluster per variant at each caller (``classification``, ``classification-candidate``).
On the methods of ``rollout.split_methods`` the caller's route is a ``weighted_clusters``
action; on ``rollout.shadow_methods`` it also mirrors a share of the calls to every other
variant (``request_mirror_policies``; Envoy sends the copy with ``-shadow`` appended to
the authority and drops its answer).

Stickiness: Envoy's weighted clusters choose by a random number unless
``header_name`` names a request header carrying that number. The caller (orchestration)
puts a stable bucket of the session id, ``sha256(session) mod 10000``, in
:data:`BUCKET_HEADER`; the weights always sum to :data:`TOTAL_WEIGHT`, so a session's
bucket picks the same variant on every call, and the non-stable variants are listed
first, so raising a candidate's weight only moves sessions from stable to the
candidate, never back and forth.

Control without restarts: the weights and the shadow percentage are runtime keys
(:func:`weight_key`, :func:`shadow_key`) read from a disk runtime layer under the mesh
directory, which ``switchboard rollout`` rewrites and swaps atomically (a symlink
rename Envoy watches). The files persist, so a restarted sidecar comes up with the
current policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from switchboard_server.mesh.envoy_config import Config
from switchboard_server.mesh.topology import STABLE, Replica, ServiceSpec, variant_cluster
from switchboard_server.rollout_headers import BUCKET_HEADER, SHADOW_HEADER, TOTAL_WEIGHT

RUNTIME_PREFIX = "rollout"
RUNTIME_SUBDIR = "envoy"


def weights_prefix(service: str) -> str:
    return f"{RUNTIME_PREFIX}.{service}.weight"


def weight_key(service: str, variant: str) -> str:
    """Envoy looks a cluster's weight up at ``runtime_key_prefix + "." + cluster``."""
    return f"{weights_prefix(service)}.{variant_cluster(service, variant)}"


def shadow_key(service: str, variant: str) -> str:
    return f"{RUNTIME_PREFIX}.{service}.shadow.{variant}"


def variant_env(
    spec: ServiceSpec, replica: Replica, data_dir: Path, comparator: str
) -> dict[str, str]:
    """What an app of a variant adds to its env: its variant name, where the shadow
    comparator listens and, for a non-stable variant, its own data directory (it never
    writes stable's state) and the topology's overrides (backend, training data, model
    artifact)."""
    prefix = f"SWITCHBOARD_{spec.name.upper()}"
    env = {f"{prefix}_VARIANT": replica.variant, f"{prefix}_COMPARATOR_ADDRESS": comparator}
    if replica.variant != STABLE:
        env["SWITCHBOARD_DATA_DIR"] = str(data_dir / "variants" / replica.variant)
        env.update(spec.variants[replica.variant].env)
    return env


def split_routes(spec: ServiceSpec, routes: list[Config]) -> list[Config]:
    """A caller's routes to ``spec`` with the split and the mirrors applied (in place)."""
    if not spec.variants:
        return routes
    prefix = f"/{spec.grpc_service}/"
    for route in routes:
        method = route.get("match", {}).get("path", "").removeprefix(prefix)
        action = route["route"]
        if method in spec.split_methods:
            del action["cluster"]
            action["weighted_clusters"] = weighted_clusters(spec)
        if method in spec.shadow_methods:
            action["request_mirror_policies"] = [
                {
                    "cluster": variant_cluster(spec.name, variant),
                    "runtime_fraction": {
                        "default_value": {"numerator": 0, "denominator": "HUNDRED"},
                        "runtime_key": shadow_key(spec.name, variant),
                    },
                    "trace_sampled": False,
                }
                for variant in spec.variants
            ]
    return routes


def shadow_ingress_routes(spec: ServiceSpec, routes: list[Config]) -> list[Config]:
    """A variant's ingress routes, with one ahead of each mirrored method's route that
    marks the mirrored copies (authority ending ``-shadow``) with :data:`SHADOW_HEADER`
    for the app, which then writes nothing. A caller's own header of that name is
    dropped on every other route: only the sidecar says what is a shadow."""
    if not spec.variants:
        return routes
    prefix = f"/{spec.grpc_service}/"
    shadow_match = {"name": ":authority", "string_match": {"contains": "-shadow"}}
    marked: list[Config] = []
    for route in routes:
        method = route.get("match", {}).get("path", "").removeprefix(prefix)
        if method in spec.shadow_methods:
            match = dict(route["match"])
            match["headers"] = [*match.get("headers", []), shadow_match]
            marked.append(
                {
                    "name": f"{route['name']}.shadow",
                    "match": match,
                    "route": route["route"],
                    "request_headers_to_add": [
                        {
                            "header": {"key": SHADOW_HEADER, "value": "1"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                }
            )
        marked.append({**route, "request_headers_to_remove": [SHADOW_HEADER]})
    return marked


def weighted_clusters(spec: ServiceSpec) -> Config:
    """Non-stable variants first (weight 0 by default), stable last with the rest."""
    clusters = [{"name": variant_cluster(spec.name, v), "weight": 0} for v in spec.variants]
    clusters.append({"name": spec.name, "weight": TOTAL_WEIGHT})
    return {
        "clusters": clusters,
        "runtime_key_prefix": weights_prefix(spec.name),
        "header_name": BUCKET_HEADER,
    }


def runtime_layer(root: Path) -> Config:
    """The disk layer ``switchboard rollout`` writes (see :mod:`.state`)."""
    return {
        "name": "rollout",
        "disk_layer": {"symlink_root": str(root / "current"), "subdirectory": RUNTIME_SUBDIR},
    }


def runtime_values(
    spec: ServiceSpec, weights: Mapping[str, int], shadow: Mapping[str, int]
) -> dict[str, int]:
    """Runtime keys for percentages per variant (``candidate=10``): the weights in
    ``TOTAL_WEIGHT`` parts, stable taking the rest, and the shadow percentages."""
    values: dict[str, int] = {}
    taken = 0
    for variant in spec.variants:
        parts = weights.get(variant, 0) * TOTAL_WEIGHT // 100
        values[weight_key(spec.name, variant)] = parts
        values[shadow_key(spec.name, variant)] = shadow.get(variant, 0)
        taken += parts
    values[weight_key(spec.name, STABLE)] = TOTAL_WEIGHT - taken
    return values
