"""Evaluation figures of a trained model on labelled test data.

* ``accuracy`` / ``accuracy_l1`` / ``macro_f1``: the model's top in-scope intent on the
  in-scope test texts (0-100), without the out-of-scope threshold;
* ``in_scope_acceptance``: share of in-scope texts that clear the threshold;
* ``oos_recall`` / ``oos_precision``: out-of-scope detection with the model's default
  threshold, over the ``oos`` texts (None when there are none);
* ``latency_ms_p50`` / ``latency_ms_p99``: one text at a time, model + verdict.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from switchboard_server.classification.dataset import Example
from switchboard_server.classification.model import TrainedModel
from switchboard_server.classification.overlay import Overlay
from switchboard_server.classification.taxonomy import OOS
from switchboard_server.classification.verdict import decide


@dataclass(frozen=True)
class EvalReport:
    n: int
    n_oos: int
    accuracy: float
    accuracy_l1: float
    macro_f1: float
    in_scope_acceptance: float
    oos_recall: float | None
    oos_precision: float | None
    latency_ms_p50: float
    latency_ms_p99: float
    backend: str
    model_version: str
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(value: float) -> float:
    return round(100.0 * value, 2)


def evaluate(
    model: TrainedModel,
    test: Sequence[Example],
    oos: Sequence[Example] = (),
    *,
    latency_sample: int = 500,
) -> EvalReport:
    in_scope = [e for e in test if e.in_scope]
    out_scope = [e for e in test if not e.in_scope] + [Example(e.text, OOS) for e in oos]
    texts = [e.text for e in in_scope] + [e.text for e in out_scope]
    proba, _ = model.scorer.analyse(texts) if texts else (np.empty((0, 1)), None)
    classes = np.array(model.classes)
    predicted = classes[proba.argmax(axis=1)] if len(texts) else np.array([])
    accepted = proba.max(axis=1) >= model.threshold if len(texts) else np.array([], bool)
    truth = np.array([e.intent for e in in_scope])
    pred_in = predicted[: len(in_scope)]
    accuracy = float((pred_in == truth).mean()) if len(in_scope) else 0.0
    l1 = np.array([t.split("/")[0] for t in truth])
    pred_l1 = np.array([p.split("/")[0] for p in pred_in])
    accuracy_l1 = float((pred_l1 == l1).mean()) if len(in_scope) else 0.0
    macro_f1 = (
        float(f1_score(truth, pred_in, labels=sorted(set(truth)), average="macro", zero_division=0))
        if len(in_scope)
        else 0.0
    )
    acceptance = float(accepted[: len(in_scope)].mean()) if len(in_scope) else 0.0
    oos_recall: float | None = None
    oos_precision: float | None = None
    if out_scope:
        refused = ~accepted
        true_refused = int(refused[len(in_scope) :].sum())
        oos_recall = _pct(true_refused / len(out_scope))
        oos_precision = _pct(true_refused / int(refused.sum())) if refused.any() else 0.0
    latencies = _latencies(model, texts[:latency_sample])
    return EvalReport(
        n=len(in_scope),
        n_oos=len(out_scope),
        accuracy=_pct(accuracy),
        accuracy_l1=_pct(accuracy_l1),
        macro_f1=_pct(macro_f1),
        in_scope_acceptance=_pct(acceptance),
        oos_recall=oos_recall,
        oos_precision=oos_precision,
        latency_ms_p50=round(float(np.percentile(latencies, 50)), 3) if latencies else 0.0,
        latency_ms_p99=round(float(np.percentile(latencies, 99)), 3) if latencies else 0.0,
        backend=model.backend,
        model_version=model.version,
        threshold=round(model.threshold, 4),
    )


def _latencies(model: TrainedModel, texts: list[str]) -> list[float]:
    overlay = Overlay()
    out = []
    for text in texts:
        started = time.perf_counter()
        proba, features = model.scorer.analyse([text])
        match = overlay.nearest(features)[0]
        decide(
            proba[0],
            model.hierarchy,
            threshold=model.threshold,
            top_k=3,
            match=match,
            overlay_min_similarity=1.0,
        )
        out.append((time.perf_counter() - started) * 1000)
    return out
