"""A full disk under a single-replica context on SQLite: its data directory is a small
tmpfs (``mount -t tmpfs -o size=``; needs root), filled to the last byte with a filler
file while the load runs, then freed. Direct AppendMemory calls to the app say what a
caller sees (RESOURCE_EXHAUSTED / UNAVAILABLE expected), ``PRAGMA integrity_check``
says whether the database survived, and the calls after the filler is gone say when it
recovered."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from scripts.chaos.mesh import Mesh, chaos_mesh
from scripts.chaos.runner import run_scenario
from scripts.chaos.scenarios import Scenario
from switchboard.context.v1 import context_service_pb2 as pb
from switchboard_client import ConnectConfig, ContextClient, SwitchboardError

FS_SIZE = "64m"
FULL_S = 10.0
PROBE_EVERY_S = 0.5
RECOVERY_TIMEOUT_S = 30.0
CHUNK = b"\0" * (1 << 20)


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as out:
        while True:
            try:
                written += out.write(CHUNK)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        with contextlib.suppress(OSError):  # the last bytes, smaller than a chunk
            while out.write(b"\0" * 4096):
                written += 4096
    return written


async def _append(client: ContextClient, session_id: str) -> str:
    entry = pb.MemoryEntry(type=pb.MEMORY_TYPE_WORKING, content=f"probe {uuid.uuid4()}")
    try:
        await client.append_memory(session_id, [entry], timeout_s=2.0)
    except SwitchboardError as exc:
        return exc.code.name
    return "OK"


def _integrity(directory: Path) -> dict[str, str]:
    checks = {}
    for db in sorted(directory.glob("*.sqlite3")):
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            checks[db.name] = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    return checks


def _mount(directory: Path) -> str:
    """A ``FS_SIZE`` tmpfs on ``directory``; the error, if any."""
    argv = ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(directory)]
    mounted = subprocess.run(argv, capture_output=True, text=True, check=False)
    return "" if mounted.returncode == 0 else mounted.stderr.strip()


def _umount(directory: Path) -> None:
    if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(directory)], check=False)


async def run_disk_full(tmp: Path, *, rate: float) -> dict[str, Any]:
    if shutil.which("mount") is None:
        return {"scenario": "disk-full", "error": "no mount(8) here"}
    context_dir = tmp / "mesh" / "data" / "context"
    context_dir.mkdir(parents=True)
    problem = _mount(context_dir)
    if problem:
        return {"scenario": "disk-full", "error": f"mount failed: {problem}"}
    probes: dict[str, Any] = {"during": {}, "after": {}}
    try:
        with chaos_mesh(tmp / "mesh", store="sqlite", replicas=1, orchestration=1) as mesh:
            app = mesh.processes()["context-0"]["endpoints"]["grpc"]
            async with ContextClient(ConnectConfig(app, timeout_s=5)) as client:

                async def disrupt(_: Mesh) -> None:
                    filler = context_dir / "filler"
                    probes["filled_bytes"] = await asyncio.to_thread(_fill, filler)
                    end = time.monotonic() + FULL_S
                    while time.monotonic() < end:
                        code = await _append(client, "chaos-disk-probe")
                        probes["during"][code] = probes["during"].get(code, 0) + 1
                        await asyncio.sleep(PROBE_EVERY_S)
                    filler.unlink()
                    start = time.monotonic()
                    while time.monotonic() - start < RECOVERY_TIMEOUT_S:
                        code = await _append(client, "chaos-disk-probe")
                        probes["after"][code] = probes["after"].get(code, 0) + 1
                        if code == "OK":
                            probes["recovered_after_s"] = round(time.monotonic() - start, 2)
                            return
                        await asyncio.sleep(PROBE_EVERY_S)

                scenario = Scenario(
                    "disk-full",
                    f"context (1 replica, SQLite) on a {FS_SIZE} tmpfs filled for {FULL_S:g} s",
                    disrupt,
                    25.0,
                    "clear UNAVAILABLE / RESOURCE_EXHAUSTED, no corruption, recovery",
                )
                result = await run_scenario(
                    mesh, scenario, rate=rate, before_s=5.0, sessions=40, timeout_s=5.0
                )
            result["integrity_check"] = _integrity(context_dir)
    finally:
        _umount(context_dir)
    result["append_memory_probes"] = probes
    return result
