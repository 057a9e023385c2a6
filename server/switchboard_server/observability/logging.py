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


def configure_logging(
    level: str = "info", fmt: str = "auto", *, stream: Any = None, cache: bool = True
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) as JSON or console text.

    structlog events go through the stdlib logger named by ``get_logger(name)`` (so every
    line carries ``logger``) and one root handler renders them and foreign stdlib records
    alike. ``cache=False`` lets tests reconfigure (cached loggers keep their first config).
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
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
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
