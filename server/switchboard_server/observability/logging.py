"""structlog set-up: JSON lines (or console on a TTY) with trace and correlation ids.

``configure_logging`` is called once, by ``__main__`` (and the CLI); library modules
only do ``log = structlog.get_logger(__name__)``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the current OpenTelemetry trace_id/span_id (hex) unless already present."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's direct writer, carrying the name given to ``get_logger(name)``."""

    def __init__(self, file: Any, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: Any) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "")


def configure_logging(
    level: str = "info", fmt: str = "auto", *, stream: Any = None, cache: bool = True
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) as JSON or console text.

    structlog events are rendered and written directly (no stdlib ``LogRecord`` on the
    per-RPC path: that costs more than the rest of the access line); each line carries
    ``logger``, the name given to ``get_logger(name)``. Foreign stdlib records (grpc,
    asyncio, ...) go through one root handler that renders them the same way.
    ``cache=False`` lets tests reconfigure (cached loggers keep their first config).
    """
    out = stream or sys.stdout
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedWriteLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
