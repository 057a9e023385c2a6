"""What the benchmarks measure with: CPU time from /proc, free ports, an open-loop load."""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time the processes ``pids`` used so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def mesh_log_excerpt(data_dir: Path, lines: int = 40) -> str:
    """The end of a mesh's log (``<data_dir>/mesh/mesh.log``) without the health-probe
    access lines: why ``switchboard up`` failed, kept before the temporary data goes."""
    log = data_dir / "mesh" / "mesh.log"
    if not log.exists():
        return "(no mesh log)"
    text = log.read_text(errors="replace").splitlines()
    return "\n".join([line for line in text if '"method": "Check"' not in line][-lines:])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_loop(
    start: Callable[[int], grpc.Future[Any]], count: int, rate: float
) -> list[tuple[float, grpc.Future[Any]]]:
    """Start call ``i`` (``start(i)``, a blocking stub's ``future()``) at ``i / rate``
    seconds; wait for all. Returns (latency ms from the call's scheduled start, call) in
    completion order.

    The scheduler sleeps with ``time.sleep`` (nanosecond timer) and each completion is
    timed on gRPC's polling thread. An asyncio scheduler would start calls late: the
    loop's epoll timeout has millisecond granularity and is rounded up, which added
    ~1 ms to every turn here.
    """
    finished: list[tuple[float, grpc.Future[Any]]] = []
    all_done = threading.Semaphore(0)

    def on_done(scheduled: float, call: grpc.Future[Any]) -> None:
        finished.append(((time.perf_counter() - scheduled) * 1000.0, call))
        all_done.release()

    begin = time.perf_counter()
    for i in range(count):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        start(i).add_done_callback(functools.partial(on_done, scheduled))
    for _ in range(count):
        all_done.acquire()
    return finished
