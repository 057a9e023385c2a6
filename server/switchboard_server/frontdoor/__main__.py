"""``python -m switchboard_server.frontdoor --port P --edge-admin-port A --expose S=C ...``

Runs the front door until SIGTERM/SIGINT. The mesh runner starts it next to the edge
Envoy with the ports of its plan; ``--expose`` names each exposed gRPC service and the
edge cluster that routes it. The poll interval is the mesh's health-check interval
(``SWITCHBOARD_MESH_HEALTH_INTERVAL_S``), the drain ``SWITCHBOARD_GRACE_PERIOD_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import structlog

from switchboard_server.app import run_on_loop
from switchboard_server.config import Settings, load_settings_or_report
from switchboard_server.frontdoor.server import create_frontdoor
from switchboard_server.mesh.topology import TopologyError
from switchboard_server.observability.logging import configure_logging

EXIT_CONFIG = 2


def _exposed(values: list[str]) -> dict[str, str]:
    exposed = {}
    for value in values:
        service, sep, cluster = value.partition("=")
        if not sep or not service or not cluster:
            raise argparse.ArgumentTypeError(f"--expose {value!r}: expected SERVICE=CLUSTER")
        exposed[service] = cluster
    return exposed


async def serve(settings: Settings, port: int, admin_port: int, exposed: dict[str, str]) -> int:
    configure_logging(settings.core.log_level, settings.core.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per look at the edge
    log = structlog.get_logger("switchboard_server.frontdoor")
    try:
        frontdoor, bound = await create_frontdoor(
            exposed,
            admin_port,
            f"{settings.mesh.host}:{port}",
            interval_s=settings.mesh.health_interval_s,
            grace_s=settings.core.grace_period_s,
        )
    except TopologyError as exc:
        log.error("frontdoor.bad_arguments", error=str(exc))
        return EXIT_CONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await frontdoor.start()
    log.info("frontdoor.listening", port=bound, edge_admin_port=admin_port)
    await stop.wait()
    await frontdoor.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m switchboard_server.frontdoor")
    parser.add_argument("--port", type=int, required=True, help="gRPC port to listen on.")
    parser.add_argument(
        "--edge-admin-port", type=int, required=True, help="The edge Envoy's admin port."
    )
    parser.add_argument(
        "--expose",
        action="append",
        required=True,
        metavar="SERVICE=CLUSTER",
        help="An exposed gRPC service and the edge cluster routing it (repeatable).",
    )
    args = parser.parse_args(argv)
    try:
        exposed = _exposed(args.expose)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    settings = load_settings_or_report("switchboard-frontdoor")
    if settings is None:
        sys.exit(EXIT_CONFIG)
    code = run_on_loop(
        serve(settings, args.port, args.edge_admin_port, exposed), settings.core.event_loop
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
