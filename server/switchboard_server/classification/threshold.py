"""The default out-of-scope threshold, tuned on held-out data.

HWU64 has no out-of-scope examples, so the default rule needs only in-scope texts:
the threshold is the top-confidence quantile at which ``target_acceptance`` of the
held-out in-scope texts are still accepted (e.g. 0.95 -> 5 % of real requests would
be refused). When the held-out data does carry ``oos`` examples, the threshold
instead maximises the mean of in-scope acceptance and out-of-scope recall. Either
way the result is clamped to ``[low, high]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def tune_threshold(
    in_scope_top: FloatArray,
    oos_top: FloatArray,
    *,
    target_acceptance: float,
    low: float,
    high: float,
) -> float:
    """Threshold from the top confidences of held-out in-scope and oos texts."""
    if len(in_scope_top) == 0:
        return low
    if len(oos_top) == 0:
        value = float(np.quantile(in_scope_top, 1.0 - target_acceptance))
    else:
        candidates = np.unique(np.concatenate([in_scope_top, oos_top]))
        accept = (in_scope_top[None, :] >= candidates[:, None]).mean(axis=1)
        refuse = (oos_top[None, :] < candidates[:, None]).mean(axis=1)
        value = float(candidates[int(np.argmax(accept + refuse))])
    return float(min(max(value, low), high))
