"""Paired comparisons of two checkpoints on the same episodes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def exact_binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact p-value of k (or fewer) of n under p=0.5: McNemar's exact test on discordant pairs
    (and the sign test)."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_mean_ci(values: Sequence[float], samples: int = 10000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap 95% interval of the mean (seeded, so reports are reproducible)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_comparison(
    a: Mapping[int, float], b: Mapping[int, float], *, binary: bool, samples: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Compare scores ``a`` and ``b`` (episode -> score) on the episodes both have.

    Reports the mean difference a - b with a paired bootstrap 95% interval, the counts of episodes where
    one is better, and an exact p-value: McNemar's exact test for 0/1 scores, the sign test otherwise.
    """
    common = sorted(set(a) & set(b))
    diffs = [a[k] - b[k] for k in common]
    a_better = sum(d > 0 for d in diffs)
    b_better = sum(d < 0 for d in diffs)
    return {
        "episodes": len(common),
        "mean_diff": float(np.mean(diffs)) if diffs else None,
        "ci95": list(ci) if (ci := bootstrap_mean_ci(diffs, samples, seed)) else None,
        "a_better": a_better,
        "b_better": b_better,
        "p_value": exact_binomial_two_sided(a_better, a_better + b_better),
        "test": "mcnemar_exact" if binary else "sign_test_exact",
    }
