"""Prometheus metrics of the context service (labels are bounded: no session ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from switchboard_server.context.values import MemoryType

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SIZE_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class ContextMetrics:
    """Cache hits/misses, memory sizes by type, retrieval latency, knowledge size."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cache = Counter(
            "context_cache_requests",
            "GetContext lookups of the result cache, by result (hit or miss).",
            ["result"],
            registry=registry,
        )
        self.retrieval = Histogram(
            "context_retrieval_seconds",
            "Time to answer GetContext, by cache result.",
            ["cache"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.session_memory = Histogram(
            "context_session_memory_entries",
            "Entries of a session's memory type after an append.",
            ["memory_type"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.appended = Counter(
            "context_memory_appended",
            "Memory entries appended, by type.",
            ["memory_type"],
            registry=registry,
        )
        self.evicted = Counter(
            "context_memory_evicted",
            "Memory entries evicted over a cap, by type.",
            ["memory_type"],
            registry=registry,
        )
        self.passages = Gauge(
            "context_knowledge_passages",
            "Passages in the knowledge base (as last seen by this replica).",
            registry=registry,
        )
        self.documents = Gauge(
            "context_knowledge_documents",
            "Documents in the knowledge base (as last seen by this replica).",
            registry=registry,
        )
        for memory_type in MemoryType:
            for metric in (self.appended, self.evicted):
                metric.labels(memory_type=memory_type.value)
        for result in ("hit", "miss"):
            self.cache.labels(result=result)
