"""Per-RPC RED metrics with the go-grpc-prometheus names, on a given registry.

``GrpcMetrics(registry, "server")`` creates::

    grpc_server_started_total{grpc_type,grpc_service,grpc_method}
    grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
    grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method}
    grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method}
    grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}   (histogram)

and ``"client"`` the ``grpc_client_*`` twins. Labels come from method names the
process itself serves or calls, so the label sets are bounded. Latency observations
carry an exemplar ``{trace_id, span_id}`` when a sampled span is current (exposed in
the OpenMetrics format, ``Accept: application/openmetrics-text``).

A histogram bucket holds one exemplar, the latest, and Prometheus reads it once per
scrape (15 s by default): a bucket's exemplar is renewed at most once per
``EXEMPLAR_REFRESH_S``; the observations in between are counted without one. Building
and validating an exemplar cost more than the observation itself, on every traced call.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Literal

import grpc
from google.protobuf import descriptor_pool
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram

from switchboard_server.observability.settings import DEFAULT_LATENCY_BUCKETS

Side = Literal["server", "client"]
GrpcType = Literal["unary", "client_stream", "server_stream", "bidi_stream"]
LABELS = ("grpc_type", "grpc_service", "grpc_method")
EXEMPLAR_REFRESH_S = 1.0  # shortest time between two exemplars of one bucket


def grpc_type_of(request_streaming: bool, response_streaming: bool) -> GrpcType:
    if request_streaming and response_streaming:
        return "bidi_stream"
    if request_streaming:
        return "client_stream"
    if response_streaming:
        return "server_stream"
    return "unary"


def split_method(full_method: str | bytes) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    if isinstance(full_method, bytes):
        full_method = full_method.decode()
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def trace_exemplar() -> dict[str, str] | None:
    """``{trace_id, span_id}`` of the current sampled span, else None."""
    ctx = trace.get_current_span().get_span_context()
    if not (ctx.is_valid and ctx.trace_flags.sampled):
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def status_code_of(value: object) -> grpc.StatusCode | None:
    """A ``grpc.StatusCode`` from whatever ``context.code()`` / ``call.code()`` returned."""
    if isinstance(value, grpc.StatusCode):
        return value
    if isinstance(value, int):
        for code in grpc.StatusCode:
            if code.value[0] == value:
                return code
    return None


class GrpcMetrics:
    """The go-grpc-prometheus collectors of one side (server or client)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        side: Side,
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> None:
        what = "on the server" if side == "server" else "by the client"
        self.started = Counter(
            f"grpc_{side}_started_total",
            f"Total number of RPCs started {what}.",
            LABELS,
            registry=registry,
        )
        self.handled = Counter(
            f"grpc_{side}_handled_total",
            f"Total number of RPCs completed {what}, regardless of success or failure.",
            (*LABELS, "grpc_code"),
            registry=registry,
        )
        self.msg_received = Counter(
            f"grpc_{side}_msg_received_total",
            f"Total number of RPC stream messages received {what}.",
            LABELS,
            registry=registry,
        )
        self.msg_sent = Counter(
            f"grpc_{side}_msg_sent_total",
            f"Total number of gRPC stream messages sent {what}.",
            LABELS,
            registry=registry,
        )
        self.handling_seconds = Histogram(
            f"grpc_{side}_handling_seconds",
            f"Histogram of response latency (seconds) of gRPC {what} until completion.",
            LABELS,
            buckets=tuple(buckets),
            registry=registry,
        )
        # the histogram's bucket bounds: observe() puts x in the first bound >= x
        self.bucket_bounds = tuple(buckets) if buckets[-1] == math.inf else (*buckets, math.inf)
        self._series: dict[tuple[GrpcType, str | bytes], MethodSeries] = {}

    def initialize(self, service_names: Iterable[str]) -> None:
        """Create the zero-valued series of every method of ``service_names`` (all codes),
        as go-grpc-prometheus does, so ``rate()`` sees the first call and the first error.

        Services not in the default protobuf descriptor pool are skipped.
        """
        pool = descriptor_pool.Default()
        for name in service_names:
            try:
                service = pool.FindServiceByName(name)
            except KeyError:
                continue
            for method in service.methods:
                grpc_type = grpc_type_of(method.client_streaming, method.server_streaming)
                labels = (grpc_type, name, method.name)
                self.started.labels(*labels)
                self.msg_received.labels(*labels)
                self.msg_sent.labels(*labels)
                self.handling_seconds.labels(*labels)
                for code in grpc.StatusCode:
                    self.handled.labels(*labels, code.name)

    def start(self, grpc_type: GrpcType, full_method: str | bytes) -> RpcMeter:
        return RpcMeter(self.series(grpc_type, full_method))

    def series(self, grpc_type: GrpcType, full_method: str | bytes) -> MethodSeries:
        """The labelled children of one method, resolved once: ``labels()`` validates and
        locks on every call, which costs more than the increments themselves."""
        key = (grpc_type, full_method)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = MethodSeries(self, grpc_type, *split_method(full_method))
        return found


class MethodSeries:
    """The series of one (type, service, method): children of each collector."""

    __slots__ = (
        "_bounds",
        "_exemplar_due",
        "_handled",
        "_labels",
        "_metrics",
        "latency",
        "method",
        "received",
        "sent",
        "service",
        "started",
    )

    def __init__(self, metrics: GrpcMetrics, grpc_type: GrpcType, service: str, method: str):
        labels = (grpc_type, service, method)
        self._metrics = metrics
        self._labels = labels
        self.service, self.method = service, method
        self.started = metrics.started.labels(*labels)
        self.received = metrics.msg_received.labels(*labels)
        self.sent = metrics.msg_sent.labels(*labels)
        self.latency = metrics.handling_seconds.labels(*labels)
        self._handled: dict[grpc.StatusCode, Counter] = {}
        self._bounds = metrics.bucket_bounds
        self._exemplar_due = [0.0] * len(self._bounds)  # perf_counter() time, per bucket

    def observe(self, seconds: float, now: float) -> None:
        """Observe a latency, with the current trace as exemplar if its bucket's is due."""
        bucket = bisect_left(self._bounds, seconds)
        if now < self._exemplar_due[bucket]:
            self.latency.observe(seconds)
            return
        exemplar = trace_exemplar()
        if exemplar is not None:
            self._exemplar_due[bucket] = now + EXEMPLAR_REFRESH_S
        self.latency.observe(seconds, exemplar=exemplar)

    def handled(self, code: grpc.StatusCode) -> Counter:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._metrics.handled.labels(*self._labels, code.name)
        return child


class RpcMeter:
    """Counts one RPC: started at construction, handled and timed by ``done``."""

    __slots__ = ("_done", "_series", "_started")

    def __init__(self, series: MethodSeries):
        self._series = series
        self._started = time.perf_counter()
        self._done = False
        series.started.inc()

    def received(self) -> None:
        self._series.received.inc()

    def sent(self) -> None:
        self._series.sent.inc()

    def done(self, code: grpc.StatusCode) -> None:
        """Record the outcome once (later calls are ignored)."""
        if self._done:
            return
        self._done = True
        now = time.perf_counter()
        self._series.handled(code).inc()
        self._series.observe(now - self._started, now)
