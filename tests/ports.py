"""Free loopback ports for the servers that tests and benchmarks start.

A port from ``bind(("127.0.0.1", 0))`` is an ephemeral one: the kernel hands the same
range out as the local end of every outgoing connection, so between picking it and a
server binding it, a connection opened meanwhile (an Envoy dialling its upstreams, a
health probe) can take it, and the server cannot bind (two tracing benchmark runs failed
so: "Failed to bind to address 127.0.0.1:43133"). A :class:`PortPool` hands out
consecutive ports from a random start below the ephemeral range instead, each bindable
when handed out and never the same one twice.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 10_000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral port range starts (Linux; 32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortPool:
    """Distinct free loopback ports, for one test's or one benchmark run's servers.

    Callable as ``make_plan``'s port allocator (``purpose`` and ``default`` unused).
    """

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._ephemeral = _ephemeral_low()
        top = self._ephemeral - 1_000
        # no room below the ephemeral range (0): let the kernel pick
        self._next = random.randrange(_LOWEST, top) if top > _LOWEST + 1_000 else 0

    def __call__(self, purpose: str = "", default: int = 0, *, stride: int = 0) -> int:
        """A free port; with ``stride``, one whose ``port + stride`` is free as well
        (replica 1 of a replicated service listens there, see REPLICA_PORT_STRIDE)."""
        while True:
            port = self._candidate()
            wanted = {port, port + stride}
            if wanted & self._used or not all(_bindable(p) for p in wanted):
                continue
            self._used |= wanted
            return port

    def _candidate(self) -> int:
        if not self._next:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return int(sock.getsockname()[1])
        port = self._next
        self._next = port + 1 if port + 1 < self._ephemeral else _LOWEST
        return port


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for one server; several: a PortPool)."""
    return PortPool()()
