"""``python -m switchboard_server <service>``: run one service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog

from switchboard_server.app import create_server, freeze_startup_heap, run_on_loop
from switchboard_server.config import ServiceName, Settings, load_settings_or_report
from switchboard_server.observability.logging import configure_logging

EXIT_CONFIG = 2
EXIT_START_FAILED = 1


async def serve(settings: Settings, service: ServiceName) -> int:
    configure_logging(settings.core.log_level, settings.core.log_format)
    log = structlog.get_logger("switchboard_server")
    server, port = await create_server(settings, service)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    log.info(
        "server.starting",
        service=service.value,
        port=port,
        event_loop=type(loop).__module__.split(".")[0],
    )
    start = asyncio.create_task(server.start())
    stop_wait = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if start.done() and start.exception() is not None:
        log.error("server.start_failed", service=service.value, exc_info=start.exception())
        stop_wait.cancel()
        await server.stop(0)
        return EXIT_START_FAILED
    if start.done():
        freeze_startup_heap()
    await stop_wait
    if not start.done():
        start.cancel()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m switchboard_server")
    parser.add_argument("service", choices=[s.value for s in ServiceName])
    args = parser.parse_args(argv)
    settings = load_settings_or_report("switchboard-server")
    if settings is None:
        sys.exit(EXIT_CONFIG)
    sys.exit(run_on_loop(serve(settings, ServiceName(args.service)), settings.core.event_loop))


if __name__ == "__main__":
    main()
