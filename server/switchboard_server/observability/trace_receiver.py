"""A small built-in OTLP/gRPC trace receiver for local runs and tests.

It serves ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` (what the
Python OTLP exporter and Envoy's ``envoy.tracers.opentelemetry`` send), keeps recent
traces in a :class:`TraceStore`, and answers an HTTP JSON query API:

* ``GET /traces?limit=N[&health=true]`` -> ``[{"trace_id", "root", "method",
  "services", "span_count", "duration_ms", "spans": [{trace_id, span_id,
  parent_span_id, service, name, kind, start_unix_nano, end_unix_nano, status,
  attributes}, ...]}, ...]`` newest first; traces of health probes only with
  ``health=true``;
* ``GET /traces/<trace_id>`` -> one such document (404 if unknown);
* ``GET /healthz`` -> ``ok``.

It runs on its own threads (a sync gRPC server and an HTTP server), so it keeps
receiving even while the host event loop blocks, e.g. in a tracer provider's shutdown
flush. Run it in-process (e.g. from ``switchboard up``)::

    receiver = TraceReceiver.from_settings(settings)      # or TraceReceiver(port=0, ...)
    receiver.start()                # receiver.port / receiver.query_port are now bound
    ...                             # point apps at SWITCHBOARD_OBS_OTLP_ENDPOINT=
                                    #   receiver.otlp_endpoint, Envoy likewise
    receiver.stop()

or as a subprocess: ``switchboard trace-receiver --port 4317 --query-port 4320``; it
logs ``receiver.ready`` with ``port`` and ``query_port`` once both listen and stops on
SIGTERM/SIGINT. ``switchboard traces --url http://127.0.0.1:4320`` queries it.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import structlog
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from switchboard_server.config import Settings
from switchboard_server.observability.trace_store import SpanRecord, TraceStore
from switchboard_server.observability.trace_view import is_health_check, trace_json

log = structlog.get_logger(__name__)

MAX_QUERY_LIMIT = 1000


class _TraceService(otlp_grpc.TraceServiceServicer):
    def __init__(self, store: TraceStore) -> None:
        self._store = store

    def Export(
        self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp.ExportTraceServiceResponse:
        self._store.add_request(request)
        return otlp.ExportTraceServiceResponse()


def _not_health_check(spans: list[SpanRecord]) -> bool:
    return not is_health_check(spans)


def _query_handler(store: TraceStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                self._send(200, "text/plain", b"ok")
            elif url.path == "/traces":
                raw = parse_qs(url.query).get("limit", ["20"])[0]
                if not raw.isdigit():
                    self._send(400, "text/plain", b"limit must be a non-negative integer")
                    return
                health = parse_qs(url.query).get("health", ["false"])[0] in ("1", "true")
                keep = None if health else _not_health_check
                traces = store.recent(min(int(raw), MAX_QUERY_LIMIT), keep)
                self._json([trace_json(spans) for spans in traces])
            elif url.path.startswith("/traces/"):
                spans = store.trace(url.path.removeprefix("/traces/"))
                if spans:
                    self._json(trace_json(spans))
                else:
                    self._send(404, "text/plain", b"unknown trace")
            else:
                self._send(404, "text/plain", b"not found")

        def _json(self, body: Any) -> None:
            self._send(200, "application/json", json.dumps(body).encode())

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the query API is not access-logged."""

    return Handler


class TraceReceiver:
    """OTLP/gRPC TraceService plus the HTTP query API over one :class:`TraceStore`."""

    def __init__(
        self,
        store: TraceStore | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 4317,
        query_port: int = 4320,
        workers: int = 4,
    ) -> None:
        self.store = store or TraceStore()
        self.host = host
        self.port = port
        self.query_port = query_port
        self.workers = workers
        self._server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TraceReceiver:
        obs = settings.observability
        return cls(
            TraceStore(obs.receiver_max_traces, obs.receiver_max_spans_per_trace),
            host=settings.core.host,
            port=obs.receiver_port,
            query_port=obs.receiver_query_port,
        )

    @property
    def otlp_endpoint(self) -> str:
        """``host:port`` for ``SWITCHBOARD_OBS_OTLP_ENDPOINT`` and Envoy's tracer."""
        return f"{self.host}:{self.port}"

    @property
    def query_url(self) -> str:
        return f"http://{self.host}:{self.query_port}"

    def start(self) -> None:
        """Bind both ports (0 picks free ones; the bound ones replace them) and serve."""
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="otlp"),
            options=[("grpc.so_reuseport", 0)],
        )
        otlp_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self.store), server
        )
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if bound == 0:
            raise OSError(f"could not bind {self.host}:{self.port}")
        http = ThreadingHTTPServer((self.host, self.query_port), _query_handler(self.store))
        http.daemon_threads = True
        server.start()
        self._server, self._http, self.port = server, http, bound
        self.query_port = http.server_port
        self._thread = threading.Thread(target=http.serve_forever, name="trace-query", daemon=True)
        self._thread.start()
        log.info("receiver.ready", port=self.port, query_port=self.query_port)

    def stop(self, grace: float | None = None) -> None:
        """Stop both servers (idempotent)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._server is not None:
            self._server.stop(grace).wait(timeout=10)
            self._server = None
