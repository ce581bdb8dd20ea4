"""Statistics used by every table: seed summaries and the paired t-test (paper's "*").

The paper marks "statistically significant improvements (t-test with p-value < 0.05)"
(Table 2 caption). We use a two-sided paired t-test (``scipy.stats.ttest_rel``) on per-user
metric values (each user's value averaged over the seeds that tested the user), counting an improvement as
significant when p < alpha and the mean difference is positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
TEST_NAME = ("two-sided paired t-test (scipy.stats.ttest_rel) on per-user values, each averaged over the seeds "
             "that tested the user")


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired t-test of ``a`` against ``b`` (same users, same order)."""

    n: int
    mean_a: float
    mean_b: float
    t: float
    p: float

    @property
    def mean_diff(self) -> float:
        return self.mean_a - self.mean_b

    def better(self, alpha: float = ALPHA) -> bool:
        """``a`` is significantly better than ``b``: p < alpha and a positive mean difference."""
        return bool(self.p < alpha and self.mean_diff > 0)

    def different(self, alpha: float = ALPHA) -> bool:
        return bool(self.p < alpha)


def paired_ttest(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Two-sided paired t-test; identical samples give p = 1, fewer than 2 pairs p = nan."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    n = int(a.size)
    mean_a = float(a.mean()) if n else math.nan
    mean_b = float(b.mean()) if n else math.nan
    if n < 2:
        return PairedTest(n, mean_a, mean_b, math.nan, math.nan)
    d = a - b
    if np.all(d == d[0]):  # zero variance of the differences
        if d[0] == 0:
            return PairedTest(n, mean_a, mean_b, 0.0, 1.0)
        return PairedTest(n, mean_a, mean_b, math.copysign(math.inf, d[0]), 0.0)
    res = stats.ttest_rel(a, b)
    return PairedTest(n, mean_a, mean_b, float(res.statistic), float(res.pvalue))


@dataclass(frozen=True)
class SeedSummary:
    """Mean over seeds, sample std (ddof 1) and a t-based confidence interval of the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: np.ndarray | list[float], level: float = 0.95) -> SeedSummary:
    """Summarise per-seed values; std and CI are nan with fewer than 2 seeds."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if n < 2:
        return SeedSummary(1, mean, math.nan, math.nan, math.nan)
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return SeedSummary(n, mean, std, mean - half, mean + half)
