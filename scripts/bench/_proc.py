"""What the benchmarks measure processes with: CPU time from /proc and free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time the processes ``pids`` used so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
