"""Domain metrics of the classifier on the server's own registry (bounded labels)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from switchboard_server.classification.taxonomy import OOS
from switchboard_server.classification.verdict import Verdict

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
OTHER = "other"


class ClassificationMetrics:
    """Requests by l1, confidences, out-of-scope verdicts, the serving model, retrains."""

    def __init__(
        self, registry: CollectorRegistry, *, max_l1_labels: int = 64, variant: str = "stable"
    ) -> None:
        self._l1_labels: set[str] = {OOS, OTHER}
        self._variant = variant
        # For comparing variants in a rollout (docs/rollouts.md): labelled by the variant
        # this process serves and by traffic (live, or shadow: mirrored copies).
        self.variant_verdicts = Counter(
            "switchboard_classification_variant_verdicts",
            "Verdicts by model variant, traffic (live|shadow) and scope (in|out).",
            ["variant", "traffic", "scope"],
            registry=registry,
        )
        self.variant_confidence = Histogram(
            "switchboard_classification_variant_confidence",
            "Confidence of verdicts by model variant and traffic (live|shadow).",
            ["variant", "traffic"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self._max_l1 = max_l1_labels
        self.requests = Counter(
            "switchboard_classification_requests",
            "Texts classified, by top-level domain of the verdict.",
            ["l1"],
            registry=registry,
        )
        self.confidence = Histogram(
            "switchboard_classification_confidence",
            "Confidence of verdicts.",
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.out_of_scope = Counter(
            "switchboard_classification_out_of_scope",
            "Texts judged out of scope.",
            registry=registry,
        )
        self.overlay_hits = Counter(
            "switchboard_classification_overlay_matches",
            "Verdicts decided by a run-time example.",
            registry=registry,
        )
        self.model_info = Gauge(
            "switchboard_classification_model_info",
            "The serving model (value 1).",
            ["version", "backend"],
            registry=registry,
        )
        self.runtime_examples = Gauge(
            "switchboard_classification_runtime_examples",
            "Run-time examples stored.",
            registry=registry,
        )
        self.retrains = Counter(
            "switchboard_classification_retrains",
            "Background retrains, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.discovery_kept = Counter(
            "switchboard_classification_discovery_kept",
            "Out-of-scope texts kept for intent discovery, by outcome (ok or error).",
            ["outcome"],
            registry=registry,
        )
        self.discovery_stored = Gauge(
            "switchboard_classification_discovery_messages",
            "Out-of-scope texts in the discovery store after the last write.",
            registry=registry,
        )
        self._model: tuple[str, str] | None = None

    def allow_domains(self, domains: Iterable[str]) -> None:
        """Let these l1 names be labels (up to the cap; the rest count as 'other')."""
        for domain in sorted(domains):
            if len(self._l1_labels) >= self._max_l1:
                break
            self._l1_labels.add(domain)

    def observe(self, verdicts: Sequence[Verdict], *, shadow: bool = False) -> None:
        traffic = "shadow" if shadow else "live"
        for verdict in verdicts:
            scope = "out" if verdict.out_of_scope else "in"
            self.variant_verdicts.labels(self._variant, traffic, scope).inc()
            self.variant_confidence.labels(self._variant, traffic).observe(verdict.confidence)
            l1 = verdict.hierarchy.l1
            self.requests.labels(l1 if l1 in self._l1_labels else OTHER).inc()
            self.confidence.observe(verdict.confidence)
            if verdict.out_of_scope:
                self.out_of_scope.inc()
            if verdict.overlay_match:
                self.overlay_hits.inc()

    def serving(self, version: str, backend: str) -> None:
        if self._model is not None:
            self.model_info.remove(*self._model)
        self._model = (version, backend)
        self.model_info.labels(version, backend).set(1)
