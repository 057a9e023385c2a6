"""``switchboard rollout set | shadow | promote | rollback | status | watch``.

* ``set SERVICE VARIANT=PERCENT``: the share of live traffic (sticky per session) on a
  variant, the rest on stable (``set classification candidate=10``);
* ``shadow SERVICE VARIANT=PERCENT``: the share of calls mirrored to a variant, whose
  answers nobody sees;
* ``promote SERVICE VARIANT``: all traffic on the variant (then make it the new stable
  in the topology at leisure);
* ``rollback SERVICE``: all traffic back on stable, no shadowing;
* ``status SERVICE [--json] [--prometheus URL]``: the policy and the variants side by
  side (since start; with ``--prometheus`` also over the last window), with a verdict;
* ``watch SERVICE VARIANT [--prometheus URL [--dir DIR | --apply-command CMD]]``: check
  every window, roll back automatically when the variant is worse than stable by the
  margins of the settings (in the local mesh, a Compose rollout directory, or through
  ``CMD``, e.g. ``kubectl apply -f -``).

The changes take ``--dir DIR`` (a Compose rendering's ``docker/rollout``) or
``--emit-configmap [--from-configmap FILE]`` (Kubernetes: print the ConfigMap the
callers' sidecars mount, for ``kubectl apply -f -``).

Parsers only; :mod:`.commands` runs them (needs the ``mesh`` extra).
"""

from __future__ import annotations

import argparse
import asyncio

from switchboard_client.cli import Subparsers, requires_extra


def rollout_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh.rollout import commands as rollout_commands
    return rollout_commands.run(args)


def comparator_command(args: argparse.Namespace) -> int:
    with requires_extra("mesh"):
        from switchboard_server.mesh.rollout import comparator
    asyncio.run(comparator.serve(args.host, args.port, args.metrics_port, args.max_pending))
    return 0


def _target_flags(parser: argparse.ArgumentParser) -> None:
    """Where a change goes when the mesh is not the local one (docs/rollouts.md)."""
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="The rollout directory the sidecars mount instead of the local mesh's "
        "(Compose: docker/rollout beside compose.yaml).",
    )
    parser.add_argument(
        "--emit-configmap",
        action="store_true",
        help="Kubernetes: print the <service>-rollout ConfigMap for `kubectl apply -f -` "
        "instead of changing a local policy.",
    )
    parser.add_argument(
        "--from-configmap",
        metavar="FILE",
        help="With --emit-configmap: the live ConfigMap (YAML or JSON; - for stdin, e.g. "
        "from `kubectl get configmap <service>-rollout -o yaml`) to change; default: all "
        "on stable.",
    )


def register(subparsers: Subparsers) -> None:
    rollout = subparsers.add_parser(
        "rollout", help="Canary and shadow rollouts of a service's variants (no restarts)."
    )
    actions = rollout.add_subparsers(dest="action", required=True)
    for name, help_text in (
        ("set", "Live traffic share of a variant: VARIANT=PERCENT (sticky per session)."),
        ("shadow", "Share of calls mirrored to a variant: VARIANT=PERCENT."),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("service")
        action.add_argument("share", metavar="VARIANT=PERCENT")
        _target_flags(action)
    promote = actions.add_parser("promote", help="All traffic on a variant.")
    promote.add_argument("service")
    promote.add_argument("variant")
    _target_flags(promote)
    rollback = actions.add_parser("rollback", help="All traffic back on stable, no shadow.")
    rollback.add_argument("service")
    _target_flags(rollback)
    status = actions.add_parser("status", help="Policy and variants side by side.")
    status.add_argument("service")
    status.add_argument("--json", action="store_true", help="Print JSON.")
    watch = actions.add_parser("watch", help="Roll back automatically when a variant is worse.")
    watch.add_argument("service")
    watch.add_argument("variant")
    watch.add_argument("--once", action="store_true", help="One window, then exit.")
    for action in (status, watch):
        action.add_argument(
            "--prometheus",
            metavar="URL",
            help="Read the figures from this Prometheus (Compose, Kubernetes), not the "
            "sidecars' admin ports.",
        )
    for action in (status, watch):
        action.add_argument(
            "--dir",
            metavar="DIR",
            help="The rollout directory of a Compose rendering (docker/rollout): the policy "
            "shown, and where watch rolls back; needs --prometheus.",
        )
    watch.add_argument(
        "--apply-command",
        metavar="CMD",
        help="Kubernetes: roll back by running CMD with the all-on-stable ConfigMap on its "
        "stdin, e.g. 'kubectl apply -f -'; needs --prometheus.",
    )
    rollout.set_defaults(func=rollout_command)
    comparator = subparsers.add_parser(
        "rollout-comparator", help="Join shadow answers with stable's (run by `switchboard up`)."
    )
    comparator.add_argument("--host", default="127.0.0.1")
    comparator.add_argument("--port", type=int, required=True, help="UDP port for answers.")
    comparator.add_argument("--metrics-port", type=int, required=True)
    comparator.add_argument("--max-pending", type=int, default=10_000)
    comparator.set_defaults(func=comparator_command)
