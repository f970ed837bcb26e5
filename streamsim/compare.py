"""Paired, autocorrelation-aware comparison of runs over the same events (docs/compare.md).

The first run is the baseline; every other run is compared with it on exactly the same events
(same replay indices, users and targets — checked):

1. per-segment (day, week or quartile) means of the metric for both runs and their differences
   ``d_s``; the mean of ``d_s`` with a **moving-block bootstrap** 95% CI (blocks of `block`
   consecutive segments, so the serial dependence that adaptation state induces between
   consecutive days is kept) — the primary evidence — and the bootstrap's two-sided p-value
   (from the smaller share of resampled means on either side of 0: below 0.05 when the
   percentile CI excludes 0);
2. Wilcoxon signed-rank on ``d_s`` (ignores autocorrelation: secondary);
3. per-user mean differences (users with >= 5 replay events): Wilcoxon signed-rank and an i.i.d.
   bootstrap CI over users;
4. McNemar on the per-event hit@10 bit (exact binomial when fewer than 25 discordant events,
   else chi-square with continuity correction);
5. Holm correction of each family of p-values across the comparisons when more than two runs.

The verdict per run is `better` / `worse` when the CI excludes 0 and, with more than one
comparison, the Holm-adjusted bootstrap p-value is below 0.05 too (so a seven-policy sweep does
not call a 95% interval that excludes 0 by chance a win); otherwise `no significant difference`.

The statistics themselves are `streamsim.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from streamsim import metrics, segments
from streamsim.errors import StreamsimError
from streamsim.runs import labels_of
from streamsim.stats import (
    bootstrap_mean_ci,
    bootstrap_mean_test,
    holm_adjust,
    mcnemar,
    moving_block_bootstrap,
    wilcoxon,
)
from streamsim.store import fetch_one

SEGMENTS = ("day", "week", "quartile", "change-aligned")
DAY_SUBSETS = ("weekday", "weekend", "before:DATE", "after:DATE")  # days of the day segments
DAY = 86_400


@dataclass(frozen=True)
class DaySubset:
    """Some of the replay's UTC days: the paired statistics use those days' events only."""

    name: str
    where: str  # SQL condition on an event's ``ts`` (alias ``b``), with one parameter or none
    params: tuple[int, ...]

    def keeps(self, day_start: int) -> bool:
        """Whether the UTC day starting at `day_start` (epoch seconds) is in the subset."""
        weekday = (day_start // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        if self.name == "weekday":
            return weekday < 5
        if self.name == "weekend":
            return weekday >= 5
        if self.name.startswith("before:"):
            return day_start < self.params[0]
        return day_start >= self.params[0]


def day_subset(segment: str) -> DaySubset | None:
    """The `DaySubset` a segment name asks for (None: a plain segmentation); `ComparisonError`
    for a date that is not a UTC date."""
    if segment in ("weekday", "weekend"):
        op = "<" if segment == "weekday" else ">="
        return DaySubset(segment, f"(b.ts // {DAY} + 3) % 7 {op} 5", ())
    kind, sep, text = segment.partition(":")
    if not sep or kind not in ("before", "after"):
        return None
    from streamsim.splits import as_epoch_seconds

    try:
        at = int(as_epoch_seconds(text, f"--segment {segment!r}"))
    except StreamsimError as exc:
        raise ComparisonError(str(exc)) from None
    if at % DAY:
        msg = f"--segment {segment!r}: expected a date (a UTC midnight) such as {kind}:2024-03-02"
        raise ComparisonError(msg)
    return DaySubset(segment, "b.ts < ?" if kind == "before" else "b.ts >= ?", (at,))
MIN_USER_EVENTS = 5


class ComparisonError(StreamsimError):
    """Runs that cannot be compared (different events, too few runs, unknown segment...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PairedResult:
    """One run compared with the baseline run (differences are run minus baseline)."""

    run_id: str
    baseline_id: str
    label: str
    n_segments: int
    mean_diff: float  # mean per-segment difference
    ci_low: float  # moving-block bootstrap 95% CI of mean_diff
    ci_high: float
    rel_diff: float  # mean_diff / mean baseline segment value
    rel_ci_low: float
    rel_ci_high: float
    bootstrap_p: float  # two-sided moving-block bootstrap p-value of mean_diff
    bootstrap_p_holm: float
    wilcoxon_stat: float  # on the segment differences
    wilcoxon_p: float
    wilcoxon_p_holm: float
    n_users: int
    user_mean_diff: float
    user_ci_low: float
    user_ci_high: float
    user_wilcoxon_p: float
    user_wilcoxon_p_holm: float
    mcnemar_b: int  # events hit@10 by the run and missed by the baseline
    mcnemar_c: int  # events missed by the run and hit by the baseline
    mcnemar_stat: float
    mcnemar_p: float
    mcnemar_p_holm: float
    mcnemar_method: str  # 'exact' | 'chi2' | 'none'
    verdict: str  # 'better' | 'worse' | 'no significant difference'


ALPHA = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Everything `streamsim compare` reports."""

    run_ids: tuple[str, ...]
    labels: tuple[str, ...]  # `runs.labels_of`: policy, model/policy, + run id if repeated
    metric: str
    segment: str
    block: int
    n_boot: int
    seed: int
    overall: dict[str, dict[str, float]]  # run id -> metrics.overall
    segments: pd.DataFrame  # segment, order, n_events, t_start, t_end, one column per run id
    pairs: tuple[PairedResult, ...]
    verdict: str
    holm: bool = field(default=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        seg = self.segments.astype(object).where(self.segments.notna(), None)
        return _clean(
            {
                "run_ids": list(self.run_ids),
                "labels": list(self.labels),
                "baseline": self.run_ids[0],
                "metric": self.metric,
                "segment": self.segment,
                "block": self.block,
                "n_boot": self.n_boot,
                "seed": self.seed,
                "holm": self.holm,
                "overall": self.overall,
                "segments": seg.to_dict(orient="records"),
                "pairs": [{k: getattr(p, k) for k in p.__slots__} for p in self.pairs],
                "verdict": self.verdict,
            }
        )


def compare(
    con: duckdb.DuckDBPyConnection,
    run_ids: list[str] | tuple[str, ...],
    *,
    metric: str = "ndcg@10",
    segment: str = "day",
    block: int = 7,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare runs over the same events with the first as baseline.

    Parameters
    ----------
    run_ids
        Two or more distinct run ids; the first is the baseline.
    metric
        Per-event metric (``ndcg@10``, ``hr@10``, ``hr@50``, ``mrr@10``).
    segment
        Unit of the paired differences: ``day``, ``week`` (UTC calendar), ``quartile``
        (equal-count quarters of replay order) or ``change-aligned`` (the pre, transition,
        early-post and late-post windows of every change point the runs cover, as in
        `segments.drift_windows`; the per-user and McNemar statistics then still use every
        event); or some of the days, per day: ``weekday``,
        ``weekend``, ``before:DATE``, ``after:DATE`` (every statistic, the per-user and
        McNemar ones included, then uses only those days' events).
    block
        Moving-block bootstrap block length in segments (clipped to the number of segments).
    n_boot
        Bootstrap resamples (>= 2000 recommended).
    seed
        Seed of the bootstrap's own generator.

    Raises
    ------
    ComparisonError
        Fewer than two or repeated runs, unknown `segment`, or runs over different events.
    """
    run_ids = tuple(run_ids)
    if len(run_ids) < 2:
        msg = f"compare needs at least two runs, got {list(run_ids)}"
        raise ComparisonError(msg)
    if len(set(run_ids)) != len(run_ids):
        msg = f"each run may appear once, got {list(run_ids)}"
        raise ComparisonError(msg)
    subset = day_subset(segment)
    if segment not in SEGMENTS and subset is None:
        msg = f"unknown segment {segment!r}; expected one of {[*SEGMENTS, *DAY_SUBSETS]}"
        raise ComparisonError(msg)
    if block < 1 or n_boot < 1:
        msg = f"`block` and `n_boot` must be >= 1, got block={block}, n_boot={n_boot}"
        raise ComparisonError(msg)
    metric = metrics.canonical_metric(metric)
    rows = [metrics.run_row(con, r) for r in run_ids]
    for row in rows[1:]:
        check_same_events(con, run_ids[0], row["run_id"])
    labels = labels_of(rows)
    overall = {r: metrics.overall(con, r) for r in run_ids}
    seg = _segment_table(con, run_ids, metric, "day" if subset else segment)
    if subset is not None:
        keep = [subset.keeps(int(t) - int(t) % DAY) for t in seg["t_start"]]
        seg = seg[keep].reset_index(drop=True)
        if len(seg) == 0:
            msg = f"--segment {segment!r}: no replayed day is in it"
            raise ComparisonError(msg)
    rng = np.random.default_rng(seed)
    raw = [
        _pair(con, seg, run_ids[0], r, label, metric=metric, block=block, n_boot=n_boot,
              rng=rng, subset=subset)
        for r, label in zip(run_ids[1:], labels[1:])
    ]  # fmt: skip
    holm = len(raw) > 1
    adj = {
        key: holm_adjust([p[key] for p in raw]) if holm else [p[key] for p in raw]
        for key in ("bootstrap_p", "wilcoxon_p", "user_wilcoxon_p", "mcnemar_p")
    }
    pairs = tuple(
        PairedResult(
            **p,
            verdict=_pair_verdict(p["ci_low"], p["ci_high"], adj["bootstrap_p"][i], multiple=holm),
            bootstrap_p_holm=adj["bootstrap_p"][i],
            wilcoxon_p_holm=adj["wilcoxon_p"][i],
            user_wilcoxon_p_holm=adj["user_wilcoxon_p"][i],
            mcnemar_p_holm=adj["mcnemar_p"][i],
        )
        for i, p in enumerate(raw)
    )
    unit = f"day, {segment} days only" if subset else segment
    verdict = _verdict(pairs, labels[0], metric, unit, holm=holm)
    return Comparison(
        run_ids=run_ids,
        labels=labels,
        metric=metric,
        segment=segment,
        block=block,
        n_boot=n_boot,
        seed=seed,
        overall=overall,
        segments=seg,
        pairs=pairs,
        verdict=verdict,
        holm=holm,
    )


def check_same_events(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str) -> None:
    """`ComparisonError` unless both runs scored the same replay indices, users and targets."""
    row = fetch_one(
        con,
        "WITH a AS (SELECT idx, user_id, item_id FROM run_events_of(?)),"
        " b AS (SELECT idx, user_id, item_id FROM run_events_of(?))"
        " SELECT count(*) FILTER (WHERE a.idx IS NULL), count(*) FILTER (WHERE b.idx IS NULL),"
        " count(*) FILTER (WHERE a.item_id <> b.item_id OR a.user_id <> b.user_id),"
        " min(coalesce(a.idx, b.idx)) FILTER (WHERE a.idx IS NULL OR b.idx IS NULL"
        " OR a.item_id <> b.item_id OR a.user_id <> b.user_id), count(a.idx), count(b.idx)"
        " FROM a FULL OUTER JOIN b ON a.idx = b.idx",
        [run_a, run_b],
    )
    assert row is not None
    only_b, only_a, differ, first, n_a, n_b = row
    if n_a == 0 or n_b == 0:
        empty = run_a if n_a == 0 else run_b
        msg = f"run {empty!r} has no scored events; nothing to compare"
        raise ComparisonError(msg)
    if only_a or only_b or differ:
        msg = (
            f"runs {run_a!r} and {run_b!r} are not over the same events: expected identical"
            f" replay indices and targets, got {n_a} vs {n_b} events, {only_a} only in"
            f" {run_a!r}, {only_b} only in {run_b!r}, {differ} with a different user or target"
            f" (first difference at replay index {first})\n\nHint: compare runs of the same"
            " scenario and dataset that both completed"
        )
        raise ComparisonError(msg)


def _segment_table(
    con: duckdb.DuckDBPyConnection, run_ids: tuple[str, ...], metric: str, segment: str
) -> pd.DataFrame:
    if segment == "change-aligned":
        return _change_table(con, run_ids, metric)
    base = segments.by_name(con, run_ids[0], segment, metric, n_boot=0)
    out = base[["segment", "order", "n_events", "t_start", "t_end"]].copy()
    out[run_ids[0]] = base["value"].to_numpy()
    for run_id in run_ids[1:]:
        other = segments.by_name(con, run_id, segment, metric, n_boot=0)
        assert list(other["segment"]) == list(base["segment"])
        out[run_id] = other["value"].to_numpy()
    return out


def _change_table(
    con: duckdb.DuckDBPyConnection, run_ids: tuple[str, ...], metric: str
) -> pd.DataFrame:
    """One segment per window around each change point the runs cover (pre, transition,
    early post, late post: `segments.drift_windows`), labelled ``<change id>:<window>``."""
    dataset = metrics.run_row(con, run_ids[0])["dataset"]
    frames = []
    for run_id in run_ids:
        w = segments.drift_windows(con, run_id, dataset, metric=metric, n_boot=0)
        w = w[w["n_events"] > 0].reset_index(drop=True)
        w["segment"] = [f"{d}:{name}" for d, name in zip(w["drift_id"], w["window"], strict=True)]
        frames.append(w)
    base = frames[0]
    if base.empty:
        msg = "--segment change-aligned: the runs cover no change point of their dataset"
        raise ComparisonError(msg)
    out = base[["segment", "order", "n_events", "t_start", "t_end"]].copy()
    out["order"] = range(len(out))
    for run_id, frame in zip(run_ids, frames, strict=True):
        assert list(frame["segment"]) == list(base["segment"])
        out[run_id] = frame["value"].to_numpy()
    return out


def _pair(
    con: duckdb.DuckDBPyConnection,
    seg: pd.DataFrame,
    base_id: str,
    run_id: str,
    label: str,
    *,
    metric: str,
    block: int,
    n_boot: int,
    rng: np.random.Generator,
    subset: DaySubset | None = None,
) -> dict[str, Any]:
    base = seg[base_id].to_numpy(dtype=np.float64)
    d = seg[run_id].to_numpy(dtype=np.float64) - base
    mean_diff = float(d.mean())
    low, high, boot_p = bootstrap_mean_test(d, block=block, n_boot=n_boot, rng=rng)
    rel = rel_low = rel_high = math.nan
    if len(d) >= 2 and base.mean() != 0:
        picks = moving_block_bootstrap(d, block=block, n_boot=n_boot, rng=rng)
        ratios = d[picks].mean(1) / base[picks].mean(1)
        rel = mean_diff / float(base.mean())
        rel_low, rel_high = (float(x) for x in np.nanquantile(ratios, [0.025, 0.975]))
    w_stat, w_p = wilcoxon(d)
    user_d = _user_diffs(con, base_id, run_id, metric, subset)
    u_low, u_high = bootstrap_mean_ci(user_d, block=1, n_boot=n_boot, rng=rng)
    _, u_p = wilcoxon(user_d)
    b, c = _discordant(con, base_id, run_id, subset)
    m_stat, m_p, m_method = mcnemar(b, c)
    return {
        "run_id": run_id,
        "baseline_id": base_id,
        "label": label,
        "n_segments": len(d),
        "mean_diff": mean_diff,
        "ci_low": low,
        "ci_high": high,
        "rel_diff": rel,
        "rel_ci_low": rel_low,
        "rel_ci_high": rel_high,
        "bootstrap_p": boot_p,
        "wilcoxon_stat": w_stat,
        "wilcoxon_p": w_p,
        "n_users": len(user_d),
        "user_mean_diff": float(user_d.mean()) if len(user_d) else math.nan,
        "user_ci_low": u_low,
        "user_ci_high": u_high,
        "user_wilcoxon_p": u_p,
        "mcnemar_b": b,
        "mcnemar_c": c,
        "mcnemar_stat": m_stat,
        "mcnemar_p": m_p,
        "mcnemar_method": m_method,
    }


def _pair_verdict(low: float, high: float, p_holm: float, *, multiple: bool) -> str:
    """`better` / `worse` when the 95% CI excludes 0 and, with `multiple` comparisons, the
    Holm-adjusted bootstrap p-value is below ALPHA as well; with one comparison the CI decides."""
    significant = (p_holm < ALPHA) if multiple else True  # NaN < ALPHA is False
    if low > 0 and significant:
        return "better"
    if high < 0 and significant:
        return "worse"
    return "no significant difference"


def _user_diffs(
    con: duckdb.DuckDBPyConnection,
    base_id: str,
    run_id: str,
    metric: str,
    subset: DaySubset | None = None,
) -> np.ndarray:
    """Per-user mean metric difference (run - baseline), users with >= 5 events (of the day
    subset, if any), by user id."""
    r_expr = metrics.metric_column(metric, "r")
    b_expr = metrics.metric_column(metric, "b")
    where, params = (f" WHERE {subset.where}", list(subset.params)) if subset else ("", [])
    rows = con.execute(
        f"SELECT avg({r_expr} - {b_expr}) AS d"
        " FROM run_events_of(?) b JOIN run_events_of(?) r ON r.idx = b.idx" + where +
        " GROUP BY b.user_id HAVING count(*) >= ?"
        " ORDER BY b.user_id",
        [base_id, run_id, *params, MIN_USER_EVENTS],
    ).fetchall()  # fmt: skip
    return np.array([r[0] for r in rows], dtype=np.float64)


def _discordant(
    con: duckdb.DuckDBPyConnection, base_id: str, run_id: str, subset: DaySubset | None = None
) -> tuple[int, int]:
    where, params = (f" WHERE {subset.where}", list(subset.params)) if subset else ("", [])
    row = fetch_one(
        con,
        "SELECT count(*) FILTER (WHERE r.hit10 AND NOT b.hit10),"
        " count(*) FILTER (WHERE b.hit10 AND NOT r.hit10)"
        " FROM run_events_of(?) b JOIN run_events_of(?) r ON r.idx = b.idx" + where,
        [base_id, run_id, *params],
    )
    assert row is not None
    return int(row[0]), int(row[1])


def _verdict(
    pairs: tuple[PairedResult, ...], base_label: str, metric: str, segment: str, *, holm: bool
) -> str:
    """One line: for each run vs the baseline, its verdict with the evidence behind it."""
    parts = []
    for p in pairs:
        p_seg = p.wilcoxon_p_holm if holm else p.wilcoxon_p
        boot = f", bootstrap p (Holm)={_fmt_p(p.bootstrap_p_holm)}" if holm else ""
        parts.append(
            f"{p.label} vs {base_label}: {p.verdict} ({metric} {p.mean_diff:+.4f} per {segment},"
            f" 95% CI [{p.ci_low:+.4f}, {p.ci_high:+.4f}]{boot}, Wilcoxon p"
            f"{' (Holm)' if holm else ''}={_fmt_p(p_seg)})"
        )
    return "; ".join(parts)


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def _clean(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
