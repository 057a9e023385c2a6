"""Span trees, JSON documents and text waterfalls of traces (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard_server.observability.trace_store import SpanRecord


def span_tree(spans: Sequence[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    """Depth-first ``(depth, span)`` pairs; spans whose parent is missing are roots."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for span in sorted(spans, key=lambda s: (s.start_unix_nano, s.end_unix_nano)):
        if span.parent_span_id and span.parent_span_id in ids:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    out: list[tuple[int, SpanRecord]] = []
    stack = [(0, root) for root in reversed(roots)]
    while stack:
        depth, span = stack.pop()
        out.append((depth, span))
        stack.extend((depth + 1, child) for child in reversed(children.get(span.span_id, [])))
    return out


HEALTH_PREFIX = "/grpc.health.v1.Health/"


def is_health_check(spans: Sequence[SpanRecord]) -> bool:
    """A trace of a health probe (Envoy active health checks trace every probe)."""
    return any(
        s.method.startswith(HEALTH_PREFIX) or s.attributes.get("user_agent") == "Envoy/HC"
        for s in spans
    )


def trace_json(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """One trace: id, root, services, duration and its spans (tree order)."""
    ordered = [span for _, span in span_tree(spans)]
    if not ordered:
        return {"trace_id": "", "spans": []}
    start = min(s.start_unix_nano for s in ordered)
    end = max(s.end_unix_nano for s in ordered)
    return {
        "trace_id": ordered[0].trace_id,
        "root": ordered[0].name,
        "method": next((s.method for s in ordered if s.method.startswith("/")), ""),
        "services": sorted({s.service for s in ordered}),
        "span_count": len(ordered),
        "duration_ms": round((end - start) / 1e6, 3),
        "spans": [s.to_json() for s in ordered],
    }


def _label(span: SpanRecord) -> str:
    """Envoy names spans ``ingress``/``router X egress``: add the gRPC method."""
    return span.name if span.method == span.name else f"{span.name} {span.method}"


def render_waterfall(spans: Sequence[SpanRecord], *, width: int = 30) -> str:
    """A text waterfall: one line per span with offset, duration and a bar."""
    tree = span_tree(spans)
    if not tree:
        return ""
    start = min(s.start_unix_nano for _, s in tree)
    end = max(s.end_unix_nano for _, s in tree)
    total = max(end - start, 1)
    head = f"trace {tree[0][1].trace_id}  {total / 1e6:.2f} ms  {len(tree)} spans"
    lines = [head]
    for depth, span in tree:
        left = int((span.start_unix_nano - start) / total * width)
        size = max(1, int((span.end_unix_nano - span.start_unix_nano) / total * width))
        bar = (" " * left + "█" * size).ljust(width)[:width]
        flag = "" if span.status != "ERROR" else "  ERROR"
        offset_ms = (span.start_unix_nano - start) / 1e6
        lines.append(
            f"  |{bar}| +{offset_ms:8.2f} ms {span.duration_ms:8.2f} ms  "
            f"{'  ' * depth}{span.service}: {_label(span)} [{span.kind.lower()}]{flag}"
        )
    return "\n".join(lines)
