"""``switchboard up | down | status | stats | render-envoy``: the local mesh.

* ``up [--replicas classification=2] [--detach]`` runs every app, sidecar and the edge
  until Ctrl-C/SIGTERM (with ``--detach``: in the background, returning once healthy);
* ``down`` stops a mesh started by ``up`` (detached or not);
* ``status [--json]`` shows every process (name, role, pid, restarts, health) and endpoint;
* ``stats [--json]`` summarises every Envoy admin: requests, retries, overflows,
  ejections and the health of each endpoint;
* ``render-envoy --out DIR`` writes the Envoy configs without running anything;
* ``token mint --subject X [--ttl 1h]`` prints a client token for the edge.
* ``certs init | rotate | show`` manages the mesh CA and workload certificates.

Only the parsers are here, so every ``switchboard`` command can list these with the base
install; the implementation (:mod:`.commands`) needs the ``mesh`` extra and is imported
when one of them runs.
"""

from __future__ import annotations

import argparse

from switchboard_client.cli import Subparsers, requires_extra
from switchboard_server.mesh.rollout import cli as rollout_cli


def up_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.up_command(args)


def down_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.down_command(args)


def status_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.status_command(args)


def stats_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.stats_command(args)


def render_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.render_command(args)


def token_mint_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.token_mint_command(args)


def token_init_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh import commands
    return commands.token_init_command(args)


def _ttl(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    if not number.isdigit() or int(number) * scale < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected seconds, or N[smhd]")
    return int(number) * scale


def certs_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh.security import certs_commands
    return certs_commands.certs_command(args)


def register(subparsers: Subparsers) -> None:
    up = subparsers.add_parser("up", help="Run the local mesh: apps, Envoy sidecars, edge.")
    up.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="Replicas of a service, each with its own sidecar (repeatable).",
    )
    up.add_argument(
        "--detach", action="store_true", help="Run in the background; return once healthy."
    )
    up.add_argument(
        "--insecure",
        action="store_true",
        help="The old open mesh: plaintext between sidecars, no identities or RBAC, no "
        "client tokens or per-client rate limit at the edge (SWITCHBOARD_MESH_INSECURE).",
    )
    up.add_argument("--no-token-url", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(func=up_command)
    down = subparsers.add_parser("down", help="Stop the mesh started by `switchboard up`.")
    down.set_defaults(func=down_command)
    status = subparsers.add_parser("status", help="Processes, health and endpoints.")
    status.add_argument("--json", action="store_true", help="Print JSON.")
    status.set_defaults(func=status_command)
    stats = subparsers.add_parser("stats", help="Per-cluster stats from every Envoy admin.")
    stats.add_argument("--json", action="store_true", help="Print JSON.")
    stats.set_defaults(func=stats_command)
    render = subparsers.add_parser("render-envoy", help="Write every Envoy config to a dir.")
    render.add_argument("--out", required=True, help="Output directory.")
    render.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N")
    render.set_defaults(func=render_command)
    token = subparsers.add_parser("token", help="Client tokens for the edge.")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    mint = token_commands.add_parser(
        "mint", help="Print a token signed with the development key (or --key)."
    )
    mint.add_argument("--subject", required=True, help="The client id (the `sub` claim).")
    mint.add_argument("--ttl", type=_ttl, default=3600, help="Lifetime: seconds or N[smhd].")
    mint.add_argument("--key", help="PEM EC private key; default: the mesh's development key.")
    mint.set_defaults(func=token_mint_command)
    init = token_commands.add_parser(
        "init",
        help="Create a deployment's signing key (kept if present) and its JWKS for the "
        "Compose or Kubernetes edge: DIR/dev-signing-key.pem, DIR/jwks/jwks.json.",
    )
    init.add_argument("--out", required=True, help="Directory, e.g. docker/auth.")
    init.set_defaults(func=token_init_command)
    certs = subparsers.add_parser("certs", help="The mesh CA and workload certificates.")
    certs.add_argument(
        "action",
        choices=["init", "rotate", "show"],
        help="init: create what is missing or due; rotate: reissue all; show: list them.",
    )
    certs.add_argument("--json", action="store_true", help="show: print JSON.")
    certs.add_argument(
        "--out",
        help="init/rotate: write to this directory for Compose (docker/certs: each Envoy "
        "mounts its identity's directory) instead of the mesh's certs dir.",
    )
    certs.set_defaults(func=certs_command)
    rollout_cli.register(subparsers)
