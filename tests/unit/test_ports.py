"""PortPool: distinct, bindable loopback ports below the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.ports import PortPool, _ephemeral_low


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    pool = PortPool()
    held = socket.socket()  # a port taken meanwhile is skipped
    try:
        first = pool()
        held.bind(("127.0.0.1", first + 1))
        ports = [first] + [pool() for _ in range(30)]
        assert first + 1 not in ports
        assert len(set(ports)) == len(ports)
        assert all(1024 <= port < _ephemeral_low() for port in ports)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", ports[-1]))  # free when handed out
    finally:
        held.close()


def test_a_strided_port_has_its_partner_free_and_reserved() -> None:
    pool = PortPool()
    port = pool(stride=5)
    later = [pool() for _ in range(10)]
    assert port + 5 not in later  # replica 1's port is not handed out again
