"""``switchboard render --target local|compose|k8s OUT_DIR``: every deployment form from
the one topology (``docs/deploy.md``).

Only the parser is here (the base install lists it); the renderer needs the ``mesh``
extra and is imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from switchboard_client.cli import Subparsers, requires_extra

EXIT_CONFIG = 2
TARGETS = ("local", "compose", "k8s")


def render_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.config import load_settings_or_report
        from switchboard_server.deploy.render import render_files, write_files
        from switchboard_server.mesh.commands import parse_replicas
        from switchboard_server.mesh.topology import TopologyError, load_topology
    settings = load_settings_or_report("switchboard render")
    if settings is None:
        return EXIT_CONFIG
    try:
        topology = load_topology(settings.mesh.topology_file)
        topology = topology.with_replicas(parse_replicas(args.replicas))
        files = render_files(args.target, topology, settings)
    except TopologyError as exc:
        print(f"switchboard render: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for path in write_files(files, Path(args.out_dir)):
        print(path)
    if args.target == "compose":
        from switchboard_server.deploy.variants import write_compose_rollout

        rollout = write_compose_rollout(Path(args.out_dir), topology)
        if rollout is not None:
            print(rollout)
    return 0


def register(subparsers: Subparsers) -> None:
    render = subparsers.add_parser(
        "render",
        help="Write the mesh for a target: local Envoy configs, Docker Compose or Kubernetes.",
    )
    render.add_argument("--target", choices=TARGETS, required=True, help="What to render.")
    render.add_argument("out_dir", metavar="OUT_DIR", help="Directory to write into.")
    render.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="Replicas of a service (Compose: services per replica; Kubernetes: the "
        "Deployment's starting count).",
    )
    render.set_defaults(func=render_command)
