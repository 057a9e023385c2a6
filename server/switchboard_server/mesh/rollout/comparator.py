"""The shadow comparator: joins a variant's answer to a mirrored request with stable's
answer to the same request, by its ``x-request-id``, with bounded memory.

Why a comparator: the caller's Envoy sends the copy and drops its answer, so no
variant and no caller ever sees both. Each app of a service with variants sends every
``Classify`` answer (request id, variant, live or shadow, intent, l1) to the
comparator as one UDP datagram on loopback: fire-and-forget, never slowing or failing
a call. The comparator keeps at most ``max_pending`` requests waiting for their other
half (oldest evicted first: a live answer nobody mirrored leaves that way, a shadow
answer whose live half never came counts as unmatched) and counts, per variant,
compared pairs and agreements at the intent and at the l1 level, as Prometheus
metrics (``rollout status`` reads them).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

LIVE = "live"


@dataclass(frozen=True)
class Answer:
    request_id: str
    variant: str
    shadow: bool
    intent: str
    l1: str

    @classmethod
    def from_datagram(cls, data: bytes) -> Answer | None:
        try:
            raw = json.loads(data)
            return cls(
                str(raw["id"]),
                str(raw["variant"]),
                bool(raw["shadow"]),
                str(raw["intent"]),
                str(raw["l1"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


class ComparatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.compared = Counter(
            "switchboard_rollout_shadow_compared",
            "Mirrored requests whose variant answer was joined to stable's, by variant.",
            ["variant"],
            registry=registry,
        )
        self.agreed = Counter(
            "switchboard_rollout_shadow_agreed",
            "Joined mirrored requests where the variant agreed with stable, by level "
            "(intent: the same intent; l1: the same top-level domain).",
            ["variant", "level"],
            registry=registry,
        )
        self.unmatched = Counter(
            "switchboard_rollout_shadow_unmatched",
            "Shadow answers evicted before stable's answer to the same request arrived.",
            ["variant"],
            registry=registry,
        )
        self.pending = Gauge(
            "switchboard_rollout_shadow_pending",
            "Requests waiting for their other half.",
            registry=registry,
        )


class AnswerJoin:
    """Pairs live and shadow answers by request id; at most ``max_pending`` held."""

    def __init__(self, max_pending: int, metrics: ComparatorMetrics) -> None:
        self._max = max_pending
        self._metrics = metrics
        self._pending: OrderedDict[str, dict[str, Answer]] = OrderedDict()

    def add(self, answer: Answer) -> None:
        if not answer.request_id:
            return
        halves = self._pending.setdefault(answer.request_id, {})
        halves[answer.variant if answer.shadow else LIVE] = answer
        live = halves.get(LIVE)  # kept after a join, for other variants' copies
        if live is not None:
            for key, shadow in list(halves.items()):
                if key != LIVE:
                    if shadow.variant != live.variant:  # a canary's own copy: nothing to learn
                        self._compare(live, shadow)
                    del halves[key]
        while len(self._pending) > self._max:
            _, evicted = self._pending.popitem(last=False)
            for key in evicted:
                if key != LIVE:
                    self._metrics.unmatched.labels(key).inc()
        self._metrics.pending.set(len(self._pending))

    def _compare(self, live: Answer, shadow: Answer) -> None:
        variant = shadow.variant
        self._metrics.compared.labels(variant).inc()
        if shadow.intent == live.intent:
            self._metrics.agreed.labels(variant, "intent").inc()
        if shadow.l1 == live.l1:
            self._metrics.agreed.labels(variant, "l1").inc()

    def __len__(self) -> int:
        return len(self._pending)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, join: AnswerJoin) -> None:
        self._join = join

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = Answer.from_datagram(data)
        if answer is not None:
            self._join.add(answer)


async def serve(host: str, port: int, metrics_port: int, max_pending: int) -> None:
    """Until SIGTERM/SIGINT: answers on UDP ``port``, metrics on ``metrics_port``."""
    registry = CollectorRegistry()
    join = AnswerJoin(max_pending, ComparatorMetrics(registry))
    server, _thread = start_http_server(metrics_port, addr=host, registry=registry)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(join), local_addr=(host, port)
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        transport.close()
        server.shutdown()
