"""``python -m switchboard_server <service>``: run one service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog

from switchboard_server.app import create_server
from switchboard_server.config import ConfigError, ServiceName, load_settings
from switchboard_server.observability.logging import configure_logging

EXIT_CONFIG = 2


async def serve(service: ServiceName) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"switchboard-server: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.core.log_level, settings.core.log_format)
    log = structlog.get_logger("switchboard_server")
    server, port = await create_server(settings, service)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    log.info("server.starting", service=service.value, port=port)
    start = asyncio.create_task(server.start())
    await stop_requested.wait()
    if not start.done():
        start.cancel()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m switchboard_server")
    parser.add_argument("service", choices=[s.value for s in ServiceName])
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(serve(ServiceName(args.service))))


if __name__ == "__main__":
    main()
