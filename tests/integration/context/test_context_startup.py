"""What a default context service loads on its way to SERVING: not the hybrid stack.

Start-up time at a million passages is Python importing the service, not opening the
index (docs/benchmarks.md, "Knowledge base: start-up"), so the default path leaves out
what it does not use: the dense-ranking stack (numpy, scipy, usearch, the MiniLM
encoder) while hybrid ranking is off, and OpenTelemetry's SDK, exporter and
instrumentation while no spans are exported. A real ``python -m switchboard_server``
style start in a fresh interpreter: settings from the environment, ``create_server``,
``start`` (store and index opened, default knowledge seeded), ``stop``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOT_ON_THE_DEFAULT_PATH = (
    "numpy",
    "scipy",
    "sklearn",
    "usearch",
    "onnxruntime",
    "tokenizers",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
    "redis",
)

CHILD = """
import asyncio, json, sys
from switchboard_server.app import create_server
from switchboard_server.config import ServiceName, load_settings

async def main() -> None:
    server, _ = await create_server(load_settings(), ServiceName.CONTEXT, "127.0.0.1:0")
    await server.start()
    ready = server.module.service is not None
    await server.stop(0)
    loaded = sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[1:])))
    print(json.dumps({"ready": ready, "loaded": loaded}))

asyncio.run(main())
"""


def start_context(data_dir: Path, **settings: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {"SWITCHBOARD_DATA_DIR": str(data_dir), "SWITCHBOARD_LOG_LEVEL": "warning"}
    env |= settings
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *NOT_ON_THE_DEFAULT_PATH],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_default_context_start_loads_no_hybrid_or_tracing_stack(tmp_path: Path) -> None:
    started = start_context(tmp_path)
    assert started["ready"] is True
    assert started["loaded"] == []
