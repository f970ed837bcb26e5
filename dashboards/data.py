"""Queries that turn the run tables into the frames the figure functions take.

Everything long is aggregated in DuckDB (``ntile`` buckets of replay order or of micro-batches),
so a 1M-event run becomes a few thousand rows per panel.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from streamsim import metrics, segments
from streamsim.runs import labels_of, run_row
from streamsim.stats import mcnemar
from streamsim.user_shift import likely_shifted_users, score_user_shift

MAX_POINTS = 2000
MIX_BUCKETS = 60
MIX_TOP_CATEGORIES = 8
MAX_DELTAS = 5000


def run_labels(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> dict[str, str]:
    """Display label per run (`streamsim.runs.labels_of`): the policy, ``model/policy`` when
    the runs' models differ, with the run id when a label would repeat."""
    return dict(zip(run_ids, labels_of([run_row(con, r) for r in run_ids]), strict=True))


def rolling_frame(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    *,
    window: int = 500,
    max_points: int = MAX_POINTS,
) -> pd.DataFrame:
    """Rolling NDCG@10 and HR@10 of every run (`streamsim.segments.rolling` + run, metric)."""
    labels = run_labels(con, run_ids)
    frames = []
    for run_id in run_ids:
        for metric in ("ndcg@10", "hr@10"):
            part = segments.rolling(con, run_id, metric, window, max_points=max_points)
            part.insert(0, "metric", metric)
            part.insert(0, "run", labels[run_id])
            frames.append(part)
    return pd.concat(frames, ignore_index=True)


def drifts_frame(
    con: duckdb.DuckDBPyConnection, dataset: str, run_ids: Sequence[str] = ()
) -> pd.DataFrame:
    """Global drifts of `dataset` (a generator's, or known changes added to a real log); with
    `run_ids`, only those overlapping the time span the runs replayed (so the time axis stays on
    the replay)."""
    span = ""
    params: list[object] = [dataset]
    if run_ids:
        bounds = [
            con.execute("SELECT min(ts), max(ts) FROM run_events_of(?)", [r]).fetchall()[0]
            for r in run_ids
        ]
        starts = [b[0] for b in bounds if b[0] is not None]
        ends = [b[1] for b in bounds if b[1] is not None]
        span = " WHERE end_ts >= ? AND start_ts <= ?"
        params += [min(starts) if starts else None, max(ends) if ends else None]
    return con.execute(
        "SELECT drift_id, kind, start_ts, end_ts, start_idx, end_idx FROM global_drifts(?)"
        f"{span} ORDER BY start_idx",
        params,
    ).df()


def alarms_frame(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pd.DataFrame:
    """Detector alarms of every run, with its display label in ``run``."""
    return _per_run(
        con,
        sorted(set(run_ids)),
        "SELECT detector, signal, idx, ts FROM run_alarms_of(?) ORDER BY idx",
        ["detector", "signal", "idx", "ts"],
    )


def segment_frame(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    kind: str,
    *,
    dataset: str | None = None,
    rolling_window: int = 500,
    eps: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-segment NDCG@10 with CIs of every run: `kind` = quartile, weekpart, day, week, drift,
    or ``weekpart-changes`` (weekday / weekend before and after each of `dataset`'s known changes
    that fall inside the replayed span: `changes_inside`)."""
    labels = run_labels(con, run_ids)
    frames = []
    cuts = changes_inside(con, dataset, run_ids) if kind == "weekpart-changes" else []
    for run_id in run_ids:
        if kind == "weekpart-changes":
            part = segments.weekpart_periods(con, run_id, cuts, n_boot=n_boot, seed=seed)
        elif kind == "drift":
            assert dataset is not None
            part = segments.drift_windows(
                con,
                run_id,
                dataset,
                rolling_window=rolling_window,
                eps=eps,
                n_boot=n_boot,
                seed=seed,
            )
        else:
            part = segments.by_name(con, run_id, kind, "ndcg@10", n_boot=n_boot, seed=seed)
        part.insert(0, "run", labels[run_id])
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def changes_inside(
    con: duckdb.DuckDBPyConnection, dataset: str | None, run_ids: Sequence[str]
) -> list[int]:
    """`segments.change_cuts` of `dataset` strictly inside the time span the runs replayed (a
    change before the first or after the last replayed event splits nothing)."""
    if dataset is None:
        return []
    bounds = [
        con.execute("SELECT min(ts), max(ts) FROM run_events_of(?)", [r]).fetchall()[0]
        for r in run_ids
    ]
    starts = [b[0] for b in bounds if b[0] is not None]
    ends = [b[1] for b in bounds if b[1] is not None]
    if not starts:
        return []
    lo, hi = min(starts), max(ends)
    return [c for c in segments.change_cuts(con, dataset) if lo < c <= hi]


SHIFTED_COLUMNS = ["run", "user_id", "flagged", "requests", "last_ts", "auroc"]


def shifted_users_frame(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], *, last: int = 5, top: int = 10
) -> pd.DataFrame:
    """Per run, the `top` users most likely to have shifted lately (`streamsim.user_shift`:
    flagged = how many of their last `last` requests had a top-1 recommendation of another
    category than the request before), with the signal's AUROC for "just shifted" on this
    stream where the dataset has a generator's regimes (NaN on a real log)."""
    labels = run_labels(con, run_ids)
    frames = []
    for run_id in run_ids:
        part = likely_shifted_users(con, run_id, last=last, top=top)
        score = score_user_shift(con, run_id)
        part.insert(0, "run", labels[run_id])
        part["auroc"] = score.auroc if score is not None else float("nan")
        frames.append(part)
    return (
        pd.concat(frames, ignore_index=True)[SHIFTED_COLUMNS]
        if frames
        else pd.DataFrame(columns=SHIFTED_COLUMNS)
    )


def has_categories(con: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    """Whether any item of `dataset` has a category (else the category mix is meaningless)."""
    rows = con.execute(
        "SELECT count(*) FROM dataset_items(?) WHERE category IS NOT NULL", [dataset]
    ).fetchall()
    return bool(rows[0][0])


def mix_frames(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    dataset: str,
    *,
    buckets: int = MIX_BUCKETS,
    top: int = MIX_TOP_CATEGORIES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(targets, top1) category shares per time bucket; categories beyond the `top` most
    frequent targets are pooled as ``other``, items without a category as ``unknown``."""
    labels = run_labels(con, run_ids)
    query = (
        "WITH e AS (SELECT r.ts, r.{col} AS item, ntile(?) OVER (ORDER BY r.idx) AS b"
        " FROM run_events_of(?) r),"
        " c AS (SELECT e.b, e.ts, coalesce(k.raw, CAST(i.category AS VARCHAR), 'unknown')"
        " AS category FROM e LEFT JOIN dataset_items(?) i ON i.item_id = e.item"
        " LEFT JOIN dataset_categories(?) k ON k.category = i.category)"
        " SELECT b AS bucket, category, count(*) AS count,"
        " min(min(ts)) OVER (PARTITION BY b) AS t_start,"
        " max(max(ts)) OVER (PARTITION BY b) AS t_end,"
        " sum(count(*)) OVER (PARTITION BY b) AS n_events FROM c GROUP BY b, category"
    )

    def counts(col: str, run_id: str) -> pd.DataFrame:
        return con.execute(query.format(col=col), [buckets, run_id, dataset, dataset]).df()

    targets_raw = counts("item_id", run_ids[0])
    totals = targets_raw.groupby("category")["count"].sum().sort_values(ascending=False)
    keep = totals.index[:top].tolist()

    def pooled(raw: pd.DataFrame) -> pd.DataFrame:
        raw = raw.assign(category=raw["category"].where(raw["category"].isin(keep), "other"))
        out = (
            raw.groupby(["bucket", "t_start", "t_end", "n_events", "category"], sort=True)["count"]
            .sum()
            .reset_index()
        )
        out["share"] = out["count"] / out["n_events"]
        order = {c: i for i, c in enumerate([*keep, "other"])}
        out["rank"] = out["category"].map(order)
        return out.sort_values(["rank", "bucket"]).drop(columns="rank").reset_index(drop=True)

    targets = pooled(targets_raw)
    top1 = []
    for run_id in run_ids:
        part = pooled(counts("top1", run_id))
        part.insert(0, "run", labels[run_id])
        top1.append(part)
    return targets, pd.concat(top1, ignore_index=True)


def batch_frames(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    *,
    max_points: int = MAX_POINTS,
    max_deltas: int = MAX_DELTAS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(health, deltas): micro-batch diagnostics bucketed to `max_points` rows per run, and
    Δ_{n+1} per micro-batch (evenly subsampled to at most `max_deltas` per run)."""
    labels = run_labels(con, run_ids)
    health, deltas = [], []
    for run_id in run_ids:
        part = con.execute(
            "WITH b AS (SELECT *, ntile(?) OVER (ORDER BY batch_id) AS bucket,"
            " sum(backward_passes) OVER (ORDER BY batch_id) AS cum FROM run_batches_of(?))"
            " SELECT bucket, min(t_start) AS t_start, max(t_end) AS t_end, count(*) AS n_batches,"
            " sum(n_events) AS n_events,"
            " avg(coalesce(tta_loss, tta_loss_before)) AS tta_loss_before,"
            " avg(tta_loss_after) AS tta_loss_after, arg_max(param_distance, batch_id)"
            " AS param_distance, max(cum) AS backward_passes_cum, avg(rec_gini) AS rec_gini,"
            " avg(tta_step_rel) AS tta_step_rel, avg(tta_top10_changed) AS tta_top10_changed,"
            " avg(top1_entropy) AS top1_entropy FROM b"
            " GROUP BY bucket ORDER BY bucket",
            [max_points, run_id],
        ).df()
        part.insert(0, "run", labels[run_id])
        health.append(part)
        count = con.execute("SELECT count(*) FROM run_batches_of(?)", [run_id]).fetchall()[0][0]
        step = max(1, int(np.ceil(count / max_deltas)))
        d = con.execute(
            "SELECT delta_next_mean FROM run_batches_of(?) WHERE batch_id % ? = 0"
            " AND delta_next_mean IS NOT NULL ORDER BY batch_id",
            [run_id, step],
        ).df()
        d.insert(0, "run", labels[run_id])
        deltas.append(d)
    return pd.concat(health, ignore_index=True), pd.concat(deltas, ignore_index=True)


def probe_frame(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pd.DataFrame:
    """The forgetting probe's points of every run: ``run, batch_id, t_end, probe_ndcg10,
    forgetting_ndcg10, forgetting_se`` (one row per probe point; empty for runs without a
    probe)."""
    return _per_run(
        con,
        run_ids,
        "SELECT batch_id, t_end, probe_ndcg10, forgetting_ndcg10, forgetting_se"
        " FROM run_batches_of(?) WHERE probe_ndcg10 IS NOT NULL ORDER BY batch_id",
        ["batch_id", "t_end", "probe_ndcg10", "forgetting_ndcg10", "forgetting_se"],
    )


def _per_run(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], query: str, columns: list[str]
) -> pd.DataFrame:
    """`query` (one ``?``: the run id) for every run, stacked, with the run's label in ``run``."""
    labels = run_labels(con, run_ids)
    parts = []
    for run_id in run_ids:
        part = con.execute(query, [run_id]).df()
        part.insert(0, "run", labels[run_id])
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", *columns])


def throughput_frame(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pd.DataFrame:
    """Total seconds per stage and events of every run (long format: one row per stage)."""
    labels = run_labels(con, run_ids)
    rows = []
    for run_id in run_ids:
        got = con.execute(
            "SELECT sum(time_adapt), sum(time_score), sum(time_reveal), sum(time_detect),"
            " sum(time_probe), sum(n_events) FROM run_batches_of(?)",
            [run_id],
        ).fetchall()[0]
        eps = run_row(con, run_id)["events_per_s"]
        stages = ("adapt", "score", "reveal", "detect", "probe")
        for stage, seconds in zip(stages, got[:5]):
            rows.append(
                {
                    "run": labels[run_id],
                    "stage": stage,
                    "seconds": float(seconds or 0.0),
                    "n_events": int(got[5] or 0),
                    "events_per_s": float("nan") if eps is None else float(eps),
                }
            )
    return pd.DataFrame(rows, columns=["run", "stage", "seconds", "n_events", "events_per_s"])


def paired_frame(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], *, metric: str = "ndcg@10"
) -> pd.DataFrame:
    """Per UTC day, every run minus the baseline (first run) on the same events.

    Columns: ``run, day, t_start, t_end, n_events, diff`` (mean per-event metric difference),
    ``b`` / ``c`` (hit@10 discordant events: run only / baseline only), ``mcnemar_p`` (that day's
    McNemar test, `streamsim.stats.mcnemar`). Empty for fewer than two runs.
    """
    columns = ["run", "day", "t_start", "t_end", "n_events", "diff", "b", "c", "mcnemar_p"]
    if len(run_ids) < 2:
        return pd.DataFrame(columns=columns)
    labels = run_labels(con, run_ids)
    r_expr = metrics.metric_column(metric, "r")
    b_expr = metrics.metric_column(metric, "b")
    frames = []
    for run_id in run_ids[1:]:
        part = con.execute(
            "SELECT CAST(floor(b.ts / 86400.0) AS BIGINT) AS day, min(b.ts) AS t_start,"
            f" max(b.ts) AS t_end, count(*) AS n_events, avg({r_expr} - {b_expr}) AS diff,"
            " count(*) FILTER (WHERE r.hit10 AND NOT b.hit10) AS b,"
            " count(*) FILTER (WHERE b.hit10 AND NOT r.hit10) AS c"
            " FROM run_events_of(?) b JOIN run_events_of(?) r ON r.idx = b.idx"
            " GROUP BY day ORDER BY day",
            [run_ids[0], run_id],
        ).df()
        part["mcnemar_p"] = [mcnemar(int(x), int(y))[1] for x, y in zip(part["b"], part["c"])]
        part.insert(0, "run", labels[run_id])
        frames.append(part)
    return pd.concat(frames, ignore_index=True)[columns]
