"""What ``switchboard rollout ...`` does (parsers: :mod:`.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import yaml

from switchboard_server.config import Settings, load_settings_or_report
from switchboard_server.mesh.rollout import promql
from switchboard_server.mesh.rollout.lastwindow import load_window, save_window
from switchboard_server.mesh.rollout.state import ServicePolicy, read_policies, write_policies
from switchboard_server.mesh.rollout.status import (
    Rollback,
    VariantStats,
    collect,
    delta,
    table,
    verdict,
)
from switchboard_server.mesh.runner import mesh_dir
from switchboard_server.mesh.state import MeshState, read_state
from switchboard_server.mesh.topology import STABLE, Topology, TopologyError, load_topology

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NOT_RUNNING = 3
CHANGES = ("set", "shadow", "promote", "rollback")
APPLY_TIMEOUT_S = 60.0


def rollout_root(settings: Settings) -> Path:
    return mesh_dir(settings) / "rollout"


def _share(value: str) -> tuple[str, int]:
    variant, sep, percent = value.partition("=")
    if not sep or not percent.isdigit():
        raise TopologyError(f"{value!r}: expected VARIANT=PERCENT, like candidate=10")
    return variant, int(percent)


def change(
    settings: Settings, topology: Topology, service: str, action: str, arg: str = ""
) -> ServicePolicy:
    """Apply one change to the persisted policy and swap the sidecars' runtime tree."""
    return change_in(rollout_root(settings), topology, service, action, arg)


def change_in(
    root: Path, topology: Topology, service: str, action: str, arg: str = ""
) -> ServicePolicy:
    """:func:`change` on the policy kept under ``root`` (the local mesh's, or a Compose
    rendering's ``docker/rollout``)."""
    policies = read_policies(root)
    policy = policies.get(service, ServicePolicy())
    if action == "set":
        variant, percent = _share(arg)
        policy.weights = {**policy.weights, variant: percent}
    elif action == "shadow":
        variant, percent = _share(arg)
        policy.shadow = {**policy.shadow, variant: percent}
    elif action == "promote":
        policy.weights, policy.shadow = {arg: 100}, {}
    elif action.startswith("rollback") or action.startswith("auto-rollback"):
        policy.weights, policy.shadow = {}, {}
    policy.last_change = f"{action} {arg}".strip()
    policies[service] = policy
    write_policies(root, topology, policies)
    return policy


def run(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    try:
        topology = load_topology(settings.mesh.topology_file)
        if args.action in CHANGES and (args.dir or args.emit_configmap):
            return change_for_target(args, settings, topology)
        if args.action in ("set", "shadow"):
            policy = change(settings, topology, args.service, args.action, args.share)
        elif args.action == "promote":
            policy = change(settings, topology, args.service, "promote", args.variant)
        elif args.action == "rollback":
            policy = change(settings, topology, args.service, "rollback")
        else:
            return _observe(args, settings, topology)
    except TopologyError as exc:
        print(f"switchboard rollout: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.service}: weights {policy.weights or 'all on stable'}, shadow {policy.shadow}")
    return 0


def _observe(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    spec = topology.services.get(args.service)
    if spec is None or not spec.variants:
        raise TopologyError(f"{args.service}: not a service with variants")
    if getattr(args, "prometheus", None):
        return _observe_prometheus(args, settings, topology)
    if args.dir or getattr(args, "apply_command", None):
        print(
            "switchboard rollout: --dir/--apply-command: a container target needs "
            "--prometheus URL (its sidecars' admin ports are out of reach)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    state = read_state(mesh_dir(settings) / "state.json")
    if state is None:
        print("switchboard rollout: the mesh is not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.action == "status":
        return _status(args, settings, topology, state)
    return asyncio.run(_watch(args, settings, topology, state))


def _status(
    args: argparse.Namespace, settings: Settings, topology: Topology, state: MeshState
) -> int:
    stats = asyncio.run(collect(state, topology, args.service))
    window_s = settings.mesh.rollout_window_s
    last = load_window(rollout_root(settings), args.service, max_age_s=2 * window_s + 5)
    if last is None:
        return _report(args, settings, topology, stats, None, "sidecar admin")
    window, age = last
    title = f"last {window_s:g} s (watch, {age:.0f} s ago)"
    return _report(args, settings, topology, stats, window, "sidecar admin", title)


def _report(
    args: argparse.Namespace,
    settings: Settings,
    topology: Topology,
    total: dict[str, VariantStats],
    window: dict[str, VariantStats] | None,
    source: str,
    window_title: str = "",
) -> int:
    """The policy, the window's figures (when there is one) and since-start figures,
    each labelled, and a verdict per variant (on the window when there is one)."""
    root = Path(args.dir) if getattr(args, "dir", None) else rollout_root(settings)
    policy = asdict(read_policies(root).get(args.service, ServicePolicy()))
    spec = topology.services[args.service]
    judged = window if window is not None else total
    verdicts = [verdict(judged, v, settings.mesh) for v in spec.variants]
    window_title = window_title or f"last {settings.mesh.rollout_window_s:g} s"
    if args.json:
        doc = {
            "source": source,
            "policy": policy,
            "variants": {name: asdict(s) for name, s in total.items()},
            "window_s": settings.mesh.rollout_window_s if window is not None else None,
            "window": {n: asdict(s) for n, s in window.items()} if window is not None else None,
            "verdicts": [asdict(v) for v in verdicts],
        }
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(f"{args.service}: last change: {policy['last_change'] or '-'} (from {source})")
        if window is not None:
            print(table(window, policy, window_title))
        print(table(total, policy, "since start"))
        for v in verdicts:
            print(v.text)
    return 0 if all(v.ok for v in verdicts) else EXIT_FAILED


def rollback_hook(args: argparse.Namespace, settings: Settings, topology: Topology) -> Rollback:
    """How ``watch`` rolls back: the local policy tree the sidecars watch (:func:`change`);
    with ``--dir DIR`` a Compose rendering's (``docker/rollout``); with ``--apply-command
    CMD`` (Kubernetes) the all-on-stable ConfigMap on CMD's stdin, e.g. ``kubectl apply -f
    -``. Every one records ``reason`` as the policy's last change."""
    if getattr(args, "dir", None):
        root = Path(args.dir)

        def in_dir(reason: str) -> None:
            change_in(root, topology, args.service, reason)

        return in_dir
    if getattr(args, "apply_command", None):
        command = shlex.split(args.apply_command)

        def apply(reason: str) -> None:
            document = rolled_back_configmap(settings, topology, args.service, reason)
            subprocess.run(command, input=document, text=True, check=True, timeout=APPLY_TIMEOUT_S)

        return apply

    def local(reason: str) -> None:
        change(settings, topology, args.service, reason)

    return local


def rolled_back_configmap(settings: Settings, topology: Topology, service: str, reason: str) -> str:
    """The ``<service>-rollout`` ConfigMap with everything on stable, as YAML."""
    from switchboard_server.deploy.render import dump
    from switchboard_server.deploy.variants import rollout_configmap

    policy = ServicePolicy(last_change=reason)
    return dump(rollout_configmap(topology, service, policy, settings.deploy.namespace))


def _judge(
    args: argparse.Namespace,
    settings: Settings,
    window: dict[str, VariantStats],
    total: dict[str, VariantStats],
    rollback: Rollback,
) -> bool:
    """One window's verdict, printed with both figures (and kept for ``status``);
    False: rolled back."""
    result = verdict(window, args.variant, settings.mesh)
    save_window(rollout_root(settings), args.service, window)
    c_win, c_all = window[args.variant], total[args.variant]
    print(
        f"window {settings.mesh.rollout_window_s:g} s: {args.variant} p99 "
        f"{_ms(c_win.p99_ms)} vs {_ms(window[STABLE].p99_ms)} on stable, "
        f"{c_win.calls} calls; since start: p99 {_ms(c_all.p99_ms)}, {c_all.calls} calls",
        flush=True,
    )
    print(result.text, flush=True)
    if result.ok:
        return True
    rollback(f"auto-rollback: {result.text}")
    print(f"{args.service}: rolled back to stable", flush=True)
    return False


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


async def _watch_prometheus(
    args: argparse.Namespace, settings: Settings, topology: Topology
) -> int:
    """Prometheus keeps the history: judge the last window at once, then every window."""
    rollback = rollback_hook(args, settings, topology)
    window_s = settings.mesh.rollout_window_s
    while True:
        figures = await promql.collect(args.prometheus, topology, args.service, window_s)
        if not _judge(args, settings, figures.window, figures.total, rollback):
            return EXIT_FAILED
        if args.once:
            return 0
        await asyncio.sleep(window_s)


def _observe_prometheus(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """``status``/``watch`` with ``--prometheus URL``: the same figures by PromQL."""
    window_s = settings.mesh.rollout_window_s
    try:
        if args.action == "status":
            figures = asyncio.run(promql.collect(args.prometheus, topology, args.service, window_s))
            return _report(args, settings, topology, figures.total, figures.window, "prometheus")
        return asyncio.run(_watch_prometheus(args, settings, topology))
    except promql.PrometheusError as exc:
        print(f"switchboard rollout: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING


async def _watch(
    args: argparse.Namespace, settings: Settings, topology: Topology, state: MeshState
) -> int:
    """Compare over each window; roll back (and exit 1) when the variant is worse."""
    rollback = rollback_hook(args, settings, topology)
    while True:
        before = await collect(state, topology, args.service)
        await asyncio.sleep(settings.mesh.rollout_window_s)
        now = await collect(state, topology, args.service)
        window = {name: delta(now[name], before[name]) for name in now}
        if not _judge(args, settings, window, now, rollback):
            return EXIT_FAILED
        if args.once:
            return 0


def change_for_target(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """``set|shadow|promote|rollback`` for a container target: ``--dir DIR`` changes the
    policy a Compose rendering's sidecars mount (``docker/rollout``) with the local code;
    ``--emit-configmap`` prints the policy as the ``<service>-rollout`` ConfigMap for
    ``kubectl apply -f -`` (starting from ``--from-configmap FILE``, the live one, else
    from all on stable), changing nothing on this machine."""
    from switchboard_server.deploy.render import dump
    from switchboard_server.deploy.variants import policy_from_configmap, rollout_configmap

    arg = {"set": "share", "shadow": "share", "promote": "variant"}.get(args.action)
    value = getattr(args, arg) if arg else ""
    if not args.emit_configmap:
        policy = change_in(Path(args.dir), topology, args.service, args.action, value)
        print(
            f"{args.service}: weights {policy.weights or 'all on stable'}, shadow {policy.shadow}"
        )
        return 0
    current = ServicePolicy()
    if args.from_configmap:
        try:
            text = (
                sys.stdin.read()
                if args.from_configmap == "-"
                else Path(args.from_configmap).read_text()
            )
        except OSError as exc:
            print(f"switchboard rollout: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            doc = yaml.safe_load(text) if text.strip() else None
            current = policy_from_configmap(doc) if isinstance(doc, dict) else current
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            print(f"switchboard rollout: --from-configmap: not a rollout ConfigMap: {exc}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_CONFIG
    with tempfile.TemporaryDirectory(prefix="switchboard-rollout-") as tmp:
        root = Path(args.dir) if args.dir else Path(tmp)
        if not args.dir:
            write_policies(root, topology, {args.service: current})
        policy = change_in(root, topology, args.service, args.action, value)
    namespace = settings.deploy.namespace
    print(dump(rollout_configmap(topology, args.service, policy, namespace)), end="")
    return 0
