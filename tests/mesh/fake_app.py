"""``python -m tests.mesh.fake_app <service>``: a fake app process for runner tests.

Like ``python -m switchboard_server`` (same settings, server and signals) but serving
the fakes of tests/support/mesh_fakes.py, so `switchboard up` can be tested without models.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from switchboard_server.app import create_server
from switchboard_server.config import ServiceName, load_settings
from switchboard_server.observability.logging import configure_logging
from tests.support.mesh_fakes import CLASSIFICATION, CONTEXT, FakeModule

SERVICES = {"classification": CLASSIFICATION, "context": CONTEXT}


async def serve(service: str) -> int:
    settings = load_settings()
    configure_logging(settings.core.log_level, "json")
    server, _ = await create_server(
        settings, ServiceName(service), module=FakeModule(SERVICES[service])
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(sys.argv[1])))
