"""Write a target's files: ``local`` (the Envoy configs ``switchboard up`` runs),
``compose`` or ``k8s``. Every file is a pure function of the topology and the settings,
so a fresh render compares equal to the committed one (``make render`` rewrites them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from switchboard_server.config import Settings
from switchboard_server.mesh.render import render_all
from switchboard_server.mesh.topology import Topology, make_plan

TARGETS = ("local", "compose", "k8s")
HEADER = (
    "# Rendered by `switchboard render --target {target}` from envoy/topology.yaml and the\n"
    "# settings: do not edit; change the topology or SWITCHBOARD_* settings, then `make render`.\n"
)


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=100)


def dump_all(documents: list[Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, width=100)


def render_files(target: str, topology: Topology, settings: Settings) -> dict[str, str]:
    """Every file of ``target`` by its path under the output directory."""
    header = HEADER.format(target=target)
    if target == "local":
        obs = settings.observability
        plan = make_plan(topology, settings.mesh)
        configs = render_all(
            plan, settings.mesh, obs.otlp_endpoint, trace_sample_ratio=obs.trace_sample_ratio
        )
        return {f"{name}.yaml": header + dump(config) for name, config in configs.items()}
    if target == "compose":
        from switchboard_server.deploy.compose import PROJECT, ComposeRender

        compose = ComposeRender(topology, settings)
        files = {"compose.yaml": header + dump(compose.compose())}
        files[".env"] = header + f"COMPOSE_PROJECT_NAME={PROJECT}\n"
        files["prometheus/prometheus.yml"] = header + dump(compose.prometheus())
        for name, config in compose.envoy_configs().items():
            files[f"envoy/{name}.yaml"] = header + dump(config)
        return files
    if target == "k8s":
        from switchboard_server.deploy.k8s import K8sRender

        return {path: header + text for path, text in K8sRender(topology, settings).files().items()}
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


def write_files(files: dict[str, str], out: Path) -> list[Path]:
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
