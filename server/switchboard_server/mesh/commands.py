"""What ``switchboard up | down | status | stats | render-envoy`` do.

The parsers live in :mod:`.cli`, which imports this module (and the server stack with
it) only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from switchboard_server.config import ServiceName, Settings, load_settings_or_report
from switchboard_server.mesh.envoy import envoy_binary
from switchboard_server.mesh.processes import pid_alive
from switchboard_server.mesh.render import render_all, write_configs
from switchboard_server.mesh.report import endpoint_table, probe_all, status_table
from switchboard_server.mesh.runner import MeshRunner, certs_dir, mesh_dir, ports_in_use
from switchboard_server.mesh.security.certs import CertError
from switchboard_server.mesh.security.mtls import cert_store, identities
from switchboard_server.mesh.security.tokens import (
    DevAuth,
    ensure_keys,
    init_deploy_keys,
    load_key,
    mint,
)
from switchboard_server.mesh.state import MeshState, read_state
from switchboard_server.mesh.stats import collect, format_summary
from switchboard_server.mesh.topology import (
    Plan,
    Topology,
    TopologyError,
    load_topology,
    make_plan,
)
from switchboard_server.observability.logging import configure_logging

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NOT_RUNNING = 3


def parse_replicas(values: list[str]) -> dict[str, int]:
    replicas: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise TopologyError(f"--replicas {value!r}: expected SERVICE=COUNT")
        replicas[name] = int(count)
    return replicas


SHARED_LOG_ORCHESTRATION_REPLICAS = 2
"""Orchestration replicas `up` runs when their conversation log is on Redis (shared) and
neither ``--replicas`` nor the topology asks for more than one: a replica can then die
or restart while the other answers."""


def _default_replicas(settings: Settings, topology: Topology) -> dict[str, int]:
    """Replicas the settings imply: two orchestration replicas on a shared (Redis) log."""
    orchestration = topology.services.get(ServiceName.ORCHESTRATION)
    if settings.orchestration.store == "redis" and orchestration and orchestration.replicas == 1:
        return {ServiceName.ORCHESTRATION.value: SHARED_LOG_ORCHESTRATION_REPLICAS}
    return {}


def _plan(settings: Settings, replicas: list[str]) -> Plan:
    topology = load_topology(settings.mesh.topology_file)
    chosen = _default_replicas(settings, topology) | parse_replicas(replicas)
    return make_plan(topology.with_replicas(chosen), settings.mesh)


def _shared_store_conflict(settings: Settings, plan: Plan) -> str | None:
    """Why ``plan`` cannot run with these settings: the SQLite store is one process per
    file (each process keeps its own caches of it), so several context replicas
    need the Redis store."""
    replicas = plan.replicas.get(ServiceName.CONTEXT, ())
    if len(replicas) > 1 and settings.context.store == "sqlite":
        return (
            f"--replicas context={len(replicas)}: the SQLite store is one process per "
            "file; set SWITCHBOARD_CONTEXT_STORE=redis (and SWITCHBOARD_CONTEXT_REDIS_URL) "
            "for several context replicas"
        )
    return None


def _certs_problem(settings: Settings, plan: Plan) -> str | None:
    """Why the mesh's certificates cannot be made (a CA of yours that cannot be used)."""
    if settings.mesh.insecure:
        return None
    try:
        cert_store(settings.mesh, certs_dir(settings)).ensure(identities(plan.topology))
    except (CertError, OSError) as exc:
        return f"certificates: {exc}"
    return None


def _running(settings: Settings) -> MeshState | None:
    state = read_state(mesh_dir(settings) / "state.json")
    if state and state.status != "stopped" and pid_alive(state.supervisor_pid):
        return state
    return None


# -- up / down ----------------------------------------------------------------------------


def _insecure(settings: Settings, insecure: bool) -> Settings:
    if not insecure:
        return settings
    return dataclasses.replace(settings, mesh=settings.mesh.model_copy(update={"insecure": True}))


def _page_with_token(settings: Settings, state: MeshState) -> str | None:
    """The chat page's address with the development token in its fragment (which the
    browser keeps to itself), when the edge uses the development token."""
    web = next((p.endpoints.get("web") for p in state.processes if p.name == "edge"), None)
    token_path = DevAuth.under(settings.core.data_dir).token_path
    if not web or "development token" not in str(
        next((p.endpoints.get("auth") for p in state.processes if p.name == "edge"), "")
    ):
        return None
    try:
        return f"{web}#token={token_path.read_text().strip()}"
    except OSError:
        return None


def up_command(args: argparse.Namespace) -> int:
    if getattr(args, "insecure", False):  # read with the other settings, and by a detached up
        os.environ["SWITCHBOARD_MESH_INSECURE"] = "true"
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    settings = _insecure(settings, args.insecure)
    try:
        plan = _plan(settings, args.replicas)
    except TopologyError as exc:
        print(f"switchboard up: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    conflict = _shared_store_conflict(settings, plan)
    if conflict:
        print(f"switchboard up: {conflict}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        envoy_binary(settings.mesh)
    except FileNotFoundError as exc:
        print(f"switchboard up: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problem = _certs_problem(settings, plan)
    if problem:
        print(f"switchboard up: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    running = _running(settings)
    if running is not None:
        print(
            f"switchboard up: a mesh is already running (pid {running.supervisor_pid}); "
            "run `switchboard down` first",
            file=sys.stderr,
        )
        return EXIT_FAILED
    busy = ports_in_use(plan)
    if busy:
        print(
            "switchboard up: ports already in use: " + ", ".join(busy) + "\n"
            "  (change them in the topology file or with SWITCHBOARD_MESH_* settings)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.detach:
        return _detach(settings, args.replicas)
    configure_logging(settings.core.log_level, settings.core.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe
    return asyncio.run(_up(settings, plan, show_token=not args.no_token_url))


async def _up(settings: Settings, plan: Plan, *, show_token: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = MeshRunner(settings, plan)

    def healthy() -> None:
        state = read_state(runner.state_path)
        if state is not None:
            print(endpoint_table(state), flush=True)
            page = _page_with_token(settings, state) if show_token else None
            if page:
                print(f"chat page (with the development token): {page}", flush=True)

    return await runner.run(stop, on_healthy=healthy)


def _detach(settings: Settings, replicas: list[str]) -> int:
    directory = mesh_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "mesh.log"
    # The supervisor's log is no place for the token; the parent prints the page's address.
    argv = [sys.executable, "-m", "switchboard_server.mesh", "up", "--no-token-url"]
    if settings.mesh.insecure:
        argv.append("--insecure")
    for value in replicas:
        argv += ["--replicas", value]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + settings.mesh.startup_timeout_s + 10
    while time.monotonic() < deadline:
        state = read_state(directory / "state.json")
        if state is not None and state.supervisor_pid == proc.pid:
            if state.status == "healthy":
                print(endpoint_table(state))
                page = _page_with_token(settings, state)
                if page:
                    print(f"chat page (with the development token): {page}")
                print(f"logs: {log_path}   stop with: switchboard down")
                return 0
            if state.status in ("failed", "stopped"):
                break
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=settings.mesh.stop_timeout_s * 4)
    tail = log_path.read_text(errors="replace").splitlines()[-40:]
    print("\n".join(tail), file=sys.stderr)
    print(f"switchboard up: the mesh did not become healthy (log: {log_path})", file=sys.stderr)
    return EXIT_FAILED


def down_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    state = _running(settings)
    if state is None:
        print("switchboard down: no mesh is running")
        return 0
    os.kill(state.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.mesh.stop_timeout_s * 4 + 10
    while pid_alive(state.supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = [p for p in state.processes if p.pid and pid_alive(p.pid)]
    for process in leftovers:  # the supervisor could not stop them: do it by group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid or 0, signal.SIGKILL)
    print(f"switchboard down: stopped {len(state.processes)} processes")
    return 0


# -- status / stats -----------------------------------------------------------------------


def status_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    state = read_state(mesh_dir(settings) / "state.json")
    if state is None:
        print("switchboard status: no mesh has run here (no state file)", file=sys.stderr)
        return EXIT_NOT_RUNNING
    alive = pid_alive(state.supervisor_pid) and state.status != "stopped"
    if alive:
        health = asyncio.run(probe_all(state))
    else:
        health = {p.name: "STOPPED" for p in state.processes}
    if args.json:
        print(json.dumps(_status_json(state, alive, health), indent=2))
    else:
        print(f"mesh: {state.status if alive else 'not running'} (pid {state.supervisor_pid})")
        print(status_table(state, health))
        print(endpoint_table(state))
    healthy = alive and all(v == "SERVING" for v in health.values())
    return 0 if healthy else EXIT_FAILED


def _status_json(state: MeshState, alive: bool, health: dict[str, str]) -> dict[str, Any]:
    doc = state.to_json()
    doc["running"] = alive
    for process in doc["processes"]:
        process["alive"] = bool(alive and process["pid"] and pid_alive(process["pid"]))
        process["health"] = health.get(process["name"], "UNKNOWN")
        process.pop("probe", None)
    return doc


def _admins(settings: Settings) -> dict[str, int]:
    state = _running(settings)
    if state is not None:
        return {
            p.name: int(p.endpoints["admin"].rsplit(":", 1)[1])
            for p in state.processes
            if "admin" in p.endpoints
        }
    plan = _plan(settings, [])
    admins = {"edge": plan.edge_admin_port}
    admins.update({f"{r.name}.sidecar": r.admin_port for r in plan.all_replicas()})
    return admins


def stats_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    summaries = asyncio.run(collect(_admins(settings)))
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(format_summary(summaries))
    reachable = any("error" not in s for s in summaries)
    return 0 if reachable else EXIT_NOT_RUNNING


def render_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    try:
        plan = _plan(settings, args.replicas)
    except TopologyError as exc:
        print(f"switchboard render-envoy: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    obs = settings.observability
    configs = render_all(
        plan, settings.mesh, obs.otlp_endpoint, trace_sample_ratio=obs.trace_sample_ratio
    )
    for path in write_configs(configs, Path(args.out)).values():
        print(path)
    return 0


# -- token --------------------------------------------------------------------------------


def token_init_command(args: argparse.Namespace) -> int:
    """Create (or keep) a deployment's signing key and write its public JWKS."""
    try:
        key_path, jwks_path = init_deploy_keys(Path(args.out))
    except (OSError, ValueError) as exc:
        print(f"switchboard token init: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"signing key: {key_path} (keep it private; mint with --key {key_path})")
    print(f"JWKS for the edge: {jwks_path}")
    return 0


def token_mint_command(args: argparse.Namespace) -> int:
    """Print a token for ``--subject`` signed with the development key (or ``--key``)."""
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    mesh = settings.mesh
    try:
        if args.key:
            key = load_key(Path(args.key))
        else:
            key = ensure_keys(DevAuth.under(settings.core.data_dir))
    except (OSError, ValueError) as exc:
        print(f"switchboard token mint: cannot load the signing key: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        mint(
            key,
            subject=args.subject,
            ttl_s=args.ttl,
            issuer=mesh.edge_jwt_issuer,
            audience=mesh.edge_jwt_audience,
        )
    )
    return 0
