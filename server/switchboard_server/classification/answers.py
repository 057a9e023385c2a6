"""Each ``Classify`` answer to the rollout comparator
(:mod:`switchboard_server.mesh.rollout.comparator`) as one UDP datagram on loopback:
fire-and-forget, so a slow or absent comparator never slows or fails a call. Only set up
when the mesh runs the service with variants.

Locally the comparator is on loopback; in Compose and Kubernetes it is a DNS name
(``rollout-comparator:9920``). A name is resolved at most every ``resolve_every_s``
(a restarted comparator container may come back on a new address), not per answer;
while it does not resolve, answers are dropped, as with no listener."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import time

from switchboard_server.classification.verdict import Verdict


class AnswerReporter:
    """Sends ``(request id, variant, live|shadow, intent, l1)`` to ``host:port``."""

    def __init__(self, address: str, variant: str, *, resolve_every_s: float = 30.0) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        self._literal = _is_ip(host)
        self._target: tuple[str, int] | None = (host, self._port) if self._literal else None
        self._resolved_at = float("-inf")
        self._resolve_every_s = resolve_every_s
        self._variant = variant
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def report(self, request_id: str, verdict: Verdict, *, shadow: bool) -> None:
        if not request_id:
            return
        datagram = json.dumps(
            {
                "id": request_id,
                "variant": self._variant,
                "shadow": shadow,
                "intent": verdict.intent,
                "l1": verdict.hierarchy.l1,
            }
        ).encode()
        target = self._where()
        if target is None:
            return
        # A full buffer or no listener: the comparison misses one answer, the call does not.
        with contextlib.suppress(OSError):
            self._socket.sendto(datagram, target)

    def _where(self) -> tuple[str, int] | None:
        now = time.monotonic()
        if self._literal or now - self._resolved_at < self._resolve_every_s:
            return self._target
        self._resolved_at = now
        try:
            found = socket.getaddrinfo(self._host, self._port, socket.AF_INET, socket.SOCK_DGRAM)
        except OSError:
            self._target = None
        else:
            self._target = (str(found[0][4][0]), self._port)
        return self._target

    def close(self) -> None:
        self._socket.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
