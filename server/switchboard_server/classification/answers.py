"""Each ``Classify`` answer to the rollout comparator
(:mod:`switchboard_server.mesh.rollout.comparator`) as one UDP datagram on loopback:
fire-and-forget, so a slow or absent comparator never slows or fails a call. Only set up
when the mesh runs the service with variants."""

from __future__ import annotations

import contextlib
import json
import socket

from switchboard_server.classification.verdict import Verdict


class AnswerReporter:
    """Sends ``(request id, variant, live|shadow, intent, l1)`` to ``host:port``."""

    def __init__(self, address: str, variant: str) -> None:
        host, _, port = address.rpartition(":")
        self._target = (host, int(port))
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
        # A full buffer or no listener: the comparison misses one answer, the call does not.
        with contextlib.suppress(OSError):
            self._socket.sendto(datagram, self._target)

    def close(self) -> None:
        self._socket.close()
