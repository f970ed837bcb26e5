"""The statistics of paired comparisons: moving-block bootstrap, Holm, McNemar, Wilcoxon, and
the t-interval over seeds.

Pure functions over numpy arrays, used by `streamsim.compare` (runs against a baseline), the
dashboards' per-day panel and the benchmarks that pool per-seed differences. scipy.stats
provides the tests; only the moving-block bootstrap and Holm's step-down are written here.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

EXACT_MCNEMAR_BELOW = 25  # discordant events below which McNemar's test is the exact binomial


def moving_block_bootstrap(
    values: np.ndarray, *, block: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Resample indices of a series by the moving-block bootstrap (Künsch 1989).

    Blocks of `block` consecutive positions start uniformly in ``0..n-block``; ``ceil(n/block)``
    blocks are concatenated and cut to length ``n``. `block` is clipped to ``max(1, n // 2)``
    (a block as long as the series would reproduce it in every resample and give a zero-width
    interval); ``block = 1`` is the ordinary i.i.d. bootstrap.

    Returns
    -------
    ndarray
        ``(n_boot, n)`` integer indices into `values`.
    """
    n = len(values)
    if n == 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    b = max(1, min(int(block), n // 2))
    k = math.ceil(n / b)
    starts = rng.integers(0, n - b + 1, size=(n_boot, k))
    picks = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(n_boot, k * b)
    return picks[:, :n]


def bootstrap_mean_ci(
    values: np.ndarray, *, block: int, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """95% percentile CI of the mean of `values` by the moving-block bootstrap."""
    low, high, _ = bootstrap_mean_test(values, block=block, n_boot=n_boot, rng=rng)
    return low, high


def bootstrap_mean_test(
    values: np.ndarray, *, block: int, n_boot: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(low, high, p): the 95% percentile CI of the mean and its two-sided p-value for mean 0.

    ``p = min(1, 2 * (k + 1) / (n_boot + 1))`` with ``k`` the smaller count of resampled means
    ``<= 0`` or ``>= 0``: the percentile-interval duality, so ``p < 0.05`` when the 95% interval
    excludes 0 (up to the quantile interpolation at its ends), and never 0 from a finite number of
    resamples (the +1 of Davison & Hinkley 1997, §4.4). Fewer than two values: NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return math.nan, math.nan, math.nan
    means = values[moving_block_bootstrap(values, block=block, n_boot=n_boot, rng=rng)].mean(1)
    low, high = np.quantile(means, [0.025, 0.975])
    tail = min(int(np.count_nonzero(means <= 0)), int(np.count_nonzero(means >= 0)))
    p = min(1.0, 2.0 * (tail + 1) / (n_boot + 1))
    return float(low), float(high), p


def holm_adjust(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return [float(x) for x in out]


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """95% t-interval of the mean of per-seed values and the two-sided one-sample t-test p-value
    against 0: (low, high, p); NaN for fewer than two values, p = 1 when they are all equal."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return math.nan, math.nan, math.nan
    mean, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
    half = float(stats.t.ppf(0.975, len(v) - 1)) * se
    p = float(stats.ttest_1samp(v, 0.0).pvalue) if se > 0 else 1.0
    return mean - half, mean + half, p


def mcnemar(b: int, c: int) -> tuple[float, float, str]:
    """McNemar's test on discordant counts: (statistic, p, method).

    Exact two-sided binomial test of ``b ~ Bin(b + c, 1/2)`` when ``b + c < 25`` (statistic =
    `b`), else the chi-square statistic with continuity correction ``(|b - c| - 1)^2 / (b + c)``
    on one degree of freedom. No discordant pair: p = 1, method ``'none'``.
    """
    n = b + c
    if n == 0:
        return 0.0, 1.0, "none"
    if n < EXACT_MCNEMAR_BELOW:
        return float(b), float(stats.binomtest(b, n, 0.5).pvalue), "exact"
    stat = (abs(b - c) - 1.0) ** 2 / n
    return float(stat), float(stats.chi2.sf(stat, 1)), "chi2"


def wilcoxon(diffs: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank (two-sided) on paired differences: (statistic, p).

    All-zero differences give p = 1; fewer than two non-zero differences give NaN.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) and np.all(d == 0):
        return 0.0, 1.0
    if np.count_nonzero(d) < 2:
        return math.nan, math.nan
    res = stats.wilcoxon(d)
    return float(res.statistic), float(res.pvalue)
