"""A full disk under the SQLite store: AppendMemory answers RESOURCE_EXHAUSTED (not
INTERNAL), the database stays intact, what was acknowledged stays, and writes work
again once space is freed. The data directory is a small tmpfs (mount needs root)."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard_server.config import ServiceName
from tests.support.context import Running, context_settings, running

SESSION = "disk-full"


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "16m") -> Iterator[Path]:
    directory.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(path: Path) -> None:
    with path.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 512):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


async def append(ctx: Running, n: int) -> None:
    entry = pb.MemoryEntry(type=pb.MEMORY_TYPE_EPISODIC, content=f"entry {n} " + "x" * 2000)
    await ctx.stub.AppendMemory(
        pb.AppendMemoryRequest(session_id=SESSION, entries=[entry], request_id=str(uuid.uuid4())),
        timeout=5,
    )


async def test_a_full_disk_is_resource_exhausted_and_recovers(tmp_path: Path) -> None:
    settings = context_settings("sqlite", tmp_path, episodic_cap=100_000)
    directory = settings.core.data_dir_for(ServiceName.CONTEXT)
    with small_tmpfs(directory):
        async with running(settings) as ctx:
            await append(ctx, 0)
            filler = directory / "filler"
            fill(filler)
            acknowledged, refused = 1, None
            for n in range(1, 10_000):  # pages SQLite holds already may take a few
                try:
                    await append(ctx, n)
                except grpc.aio.AioRpcError as exc:
                    refused = exc
                    break
                acknowledged += 1
            assert refused is not None
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details()
            assert "disk is full" in (refused.details() or "")

            filler.unlink()
            await append(ctx, -1)
            stats = await ctx.stub.GetMemoryStats(
                pb.GetMemoryStatsRequest(session_id=SESSION), timeout=5
            )
            assert stats.memory_stats.episodic_count == acknowledged + 1
        database = directory / settings.context.sqlite_filename
        with contextlib.closing(sqlite3.connect(database)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
