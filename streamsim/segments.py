"""Per-segment metrics of a run, as SQL over its per-event records (``run_events_of``).

Segmentations of the replayed stream::

    replay index  0 ─────────────────────────────────────────────────────────► n
    quartiles     |     Q1      |     Q2      |     Q3      |     Q4      |   equal event counts
    calendar      | d0 | d1 | d2 | ...                                        UTC day / ISO week
    weekpart      weekday | weekend                                          UTC, Sat + Sun
    weekpart ×    weekday | weekend, before | between | after known changes  change_cuts
      changes
    drift windows      [p-W, p) pre | [start, end] transition | (end, end+W] early post
                       | (end+W, end+3W] late post, W = 10% of the gap to the next drift

Every segment frame has one row per segment with the columns ``segment`` (label), ``order``,
``n_events``, ``first_idx``, ``last_idx``, ``t_start``, ``t_end`` (epoch seconds), ``value`` (mean
of the requested metric), ``ci_low`` / ``ci_high`` (95% bootstrap interval of that mean) and the
means of every metric (``ndcg10``, ``hit10``, ``hit50``, ``rr10``).

The intervals resample *chunks* of consecutive events (each segment is cut into up to
`n_chunks` equal-count chunks of replay order; a resample draws chunks with replacement and takes
the event-weighted mean), so the within-chunk autocorrelation that adaptation state induces is
kept, not averaged away as an event-level bootstrap would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from streamsim import config
from streamsim.errors import ScenarioError
from streamsim.metrics import metric_column
from streamsim.runs import run_row
from streamsim.store import fetch_one

CALENDAR_UNITS = ("day", "week", "weekpart", "hour")


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentSpec:
    """[segments]: which segmentations the report shows."""

    quartiles: bool = True
    calendar: tuple[str, ...] = ("day", "week", "weekpart")
    drift_windows: bool = True
    recovery_eps: float = 0.05  # recovery: rolling NDCG@10 back within eps of pre-drift level
    rolling_window: int = 500  # events in the rolling NDCG@10 used for recovery

    @classmethod
    def from_table(cls, table: Any, where: str) -> SegmentSpec:
        spec = cls(**config.bind(cls, table, where))
        bad = [c for c in spec.calendar if c not in CALENDAR_UNITS]
        if bad:
            msg = (
                f"{where} key 'calendar': unknown {bad[0]!r}; "
                f"expected one of {list(CALENDAR_UNITS)}"
            )
            raise ScenarioError(msg)
        return spec


SEGMENT_COLUMNS = (
    "segment",
    "order",
    "n_events",
    "first_idx",
    "last_idx",
    "t_start",
    "t_end",
    "value",
    "ci_low",
    "ci_high",
    "ndcg10",
    "hit10",
    "hit50",
    "rr10",
)
DRIFT_WINDOWS = ("pre", "transition", "early_post", "late_post")
DAY = 86400

# weekday of a UTC epoch day number: 1970-01-01 was a Thursday (Monday = 0)
_DAY_SQL = "CAST(floor(ts / 86400.0) AS BIGINT)"
_WEEKDAY_SQL = f"((({_DAY_SQL} + 3) % 7) + 7) % 7"


def quartiles(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    metric: str = "ndcg10",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Equal-count quartiles Q1..Q4 of the run's events in replay order (T2ARec Fig. 2/5).

    Quartile sizes differ by at most one event (SQL ``ntile(4)``); ``first_idx`` / ``last_idx``
    and ``t_start`` / ``t_end`` are the boundaries.
    """
    key = "'Q' || CAST(ntile(4) OVER (ORDER BY idx) AS VARCHAR)"
    return _summarise(con, run_id, metric, key, n_boot=n_boot, seed=seed)


def calendar(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    unit: Literal["day", "week"] = "day",
    metric: str = "ndcg10",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One segment per UTC calendar day or ISO week (Monday start), labelled by its first date."""
    if unit == "day":
        key = _DAY_SQL
    elif unit == "week":
        key = f"{_DAY_SQL} - {_WEEKDAY_SQL}"
    else:
        msg = f"calendar `unit` must be 'day' or 'week', got {unit!r}"
        raise ValueError(msg)
    frame = _summarise(con, run_id, metric, key, n_boot=n_boot, seed=seed)
    days = pd.to_datetime(frame["segment"].astype("int64") * DAY, unit="s", utc=True)
    frame["segment"] = days.dt.strftime("%Y-%m-%d").to_numpy()
    return frame


def weekpart(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    metric: str = "ndcg10",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Two segments, ``weekday`` (Mon-Fri) and ``weekend`` (Sat, Sun), by UTC calendar day."""
    key = f"CASE WHEN {_WEEKDAY_SQL} >= 5 THEN 'weekend' ELSE 'weekday' END"
    frame = _summarise(con, run_id, metric, key, n_boot=n_boot, seed=seed)
    rank = {"weekday": 0, "weekend": 1}
    frame["order"] = frame["segment"].map(rank)
    return frame.sort_values("order").reset_index(drop=True)


def change_cuts(con: duckdb.DuckDBPyConnection, dataset: str) -> list[int]:
    """The times (epoch seconds) at which a dataset's global drifts begin, one per change: each
    sudden, gradual or incremental drift's start, and a recurring regime's first switch only (a
    weekly regime switches twice a week; splitting at every switch would leave no weekday and
    weekend in one period). New-item drifts are not interest changes and are left out."""
    rows = con.execute(
        "SELECT kind, min(start_ts) AS first_ts, list(start_ts) AS starts FROM global_drifts(?)"
        " WHERE kind <> 'new_items' GROUP BY kind",
        [dataset],
    ).fetchall()
    cuts: set[int] = set()
    for kind, first, starts in rows:
        cuts |= {int(first)} if kind == "recurring" else {int(t) for t in starts}
    return sorted(cuts)


def weekpart_periods(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    cuts: list[int],
    metric: str = "ndcg10",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """``weekday`` and ``weekend`` (UTC) within each period between consecutive `cuts` (epoch
    seconds, `change_cuts`): segments labelled ``weekday, before 2024-03-02``, ``weekend,
    2024-03-02 to 2024-04-01``, ``weekday, from 2024-04-01``; the plain `weekpart` with no cut."""
    cuts = sorted({int(c) for c in cuts})
    if not cuts:
        return weekpart(con, run_id, metric, n_boot=n_boot, seed=seed)
    whens = " ".join(f"WHEN ts < {int(c)} THEN {i}" for i, c in enumerate(cuts))
    period_sql = f"(CASE {whens} ELSE {len(cuts)} END)"
    key = f"{period_sql} * 2 + CASE WHEN {_WEEKDAY_SQL} >= 5 THEN 1 ELSE 0 END"
    frame = _summarise(con, run_id, metric, key, n_boot=n_boot, seed=seed)
    dates = [pd.Timestamp(c, unit="s", tz="UTC").strftime("%Y-%m-%d") for c in cuts]
    periods = [f"before {dates[0]}"]
    periods += [f"{a} to {b}" for a, b in zip(dates, dates[1:], strict=False)]
    periods.append(f"from {dates[-1]}")
    keys = frame["segment"].astype("int64")
    frame["order"] = keys.to_numpy()
    frame["segment"] = [
        f"{'weekend' if k % 2 else 'weekday'}, {periods[k // 2]}" for k in keys.tolist()
    ]
    return frame.sort_values("order").reset_index(drop=True)


def by_name(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    segment: str,
    metric: str = "ndcg10",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The segmentation called `segment`: ``day``, ``week``, ``quartile`` or ``weekpart``."""
    if segment in ("day", "week"):
        return calendar(con, run_id, segment, metric, n_boot=n_boot, seed=seed)  # type: ignore[arg-type]
    if segment == "quartile":
        return quartiles(con, run_id, metric, n_boot=n_boot, seed=seed)
    if segment == "weekpart":
        return weekpart(con, run_id, metric, n_boot=n_boot, seed=seed)
    msg = f"unknown segment {segment!r}; expected one of ['day', 'week', 'quartile', 'weekpart']"
    raise ValueError(msg)


def drift_windows(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    dataset: str,
    *,
    rolling_window: int = 500,
    eps: float = 0.05,
    metric: str = "ndcg10",
    width_share: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Metric means in the windows around every global drift of `dataset` the run covers.

    For a drift with ground-truth transition ``[start_idx, end_idx]`` (replay index) and
    ``W = max(1, floor(width_share * gap))``, ``gap`` = events from the drift's end to the next
    drift's start (or to the end of the run's stream), the windows are: pre ``[start - W, start)``
    (not before the previous drift's end), transition ``[start, end]``, early post
    ``(end, end + W]`` and late post ``(end + W, end + 3W]``.

    Recovery time (columns ``recovery_events`` and ``recovery_hours``, equal on the drift's four
    rows): the number of events after the drift's end until the trailing mean NDCG@10 over the
    last `rolling_window` post-drift events (at least ``rolling_window // 10`` of them) is back
    at or above the pre-drift mean minus `eps`; searched up to the next drift, NaN if it never
    recovers (or the pre window is empty).

    Returns
    -------
    DataFrame
        The segment columns (``segment`` = window name) plus ``drift_id``, ``kind``, ``window``,
        ``width`` (W), ``pre_level``, ``recovery_events``, ``recovery_hours``; empty (same
        columns) when the dataset has no global drift inside the run's stream.
    """
    bounds = fetch_one(con, "SELECT min(idx), max(idx) FROM run_events_of(?)", [run_id])
    run_row(con, run_id)
    extra = ["drift_id", "kind", "window", "width", "pre_level", "recovery_events"]
    columns = [*SEGMENT_COLUMNS, *extra, "recovery_hours"]
    if bounds is None or bounds[0] is None:
        return pd.DataFrame(columns=columns)
    lo, hi = int(bounds[0]), int(bounds[1])
    drifts = con.execute(
        "SELECT drift_id, kind, start_idx, end_idx FROM global_drifts(?)"
        " ORDER BY start_idx, drift_id",
        [dataset],
    ).fetchall()
    frames = []
    for k, (drift_id, kind, start, end) in enumerate(drifts):
        if end < lo or start > hi:
            continue
        prev_end = drifts[k - 1][3] + 1 if k > 0 else lo
        next_start = drifts[k + 1][2] if k + 1 < len(drifts) else hi + 1
        width = max(1, math.floor(width_share * (next_start - (end + 1))))
        pre_lo = max(start - width, prev_end, lo)
        key = (
            f"CASE WHEN idx >= {int(pre_lo)} AND idx < {int(start)} THEN 'pre'"
            f" WHEN idx >= {int(start)} AND idx <= {int(end)} THEN 'transition'"
            f" WHEN idx > {int(end)} AND idx <= {int(end + width)} THEN 'early_post'"
            f" WHEN idx > {int(end + width)} AND idx <= {int(end + 3 * width)}"
            " THEN 'late_post' END"
        )
        frame = _summarise(con, run_id, metric, key, n_boot=n_boot, seed=seed + k)
        frame = frame[frame["segment"].notna()].copy()
        frame["order"] = frame["segment"].map({w: i for i, w in enumerate(DRIFT_WINDOWS)})
        frame = frame.sort_values("order")
        pre = frame.loc[frame["segment"] == "pre", "ndcg10"]
        pre_level = float(pre.iloc[0]) if len(pre) else math.nan
        rec_events, rec_hours = _recovery(
            con,
            run_id,
            end=int(end),
            stop=int(next_start),
            pre_level=pre_level,
            window=rolling_window,
            eps=eps,
        )
        frame["drift_id"] = int(drift_id)
        frame["kind"] = str(kind)
        frame["window"] = frame["segment"]
        frame["width"] = width
        frame["pre_level"] = pre_level
        frame["recovery_events"] = rec_events
        frame["recovery_hours"] = rec_hours
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    out["order"] = np.arange(len(out))
    return out[columns]


def _recovery(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    end: int,
    stop: int,
    pre_level: float,
    window: int,
    eps: float,
) -> tuple[float, float]:
    """(events, hours) after `end` until the trailing NDCG@10 is back within `eps` of pre."""
    if math.isnan(pre_level):
        return math.nan, math.nan
    min_periods = max(1, window // 10)
    row = fetch_one(
        con,
        "WITH post AS (SELECT idx, ts, row_number() OVER (ORDER BY idx) AS k,"
        f" avg(ndcg10) OVER (ORDER BY idx ROWS BETWEEN {int(window) - 1} PRECEDING"
        " AND CURRENT ROW) AS roll FROM run_events_of(?) WHERE idx > ? AND idx < ?)"
        " SELECT min(k), arg_min(ts, k) FROM post WHERE k >= ? AND roll >= ?",
        [run_id, end, stop, min_periods, pre_level - eps],
    )
    if row is None or row[0] is None:
        return math.nan, math.nan
    t_end = fetch_one(con, "SELECT max(ts) FROM run_events_of(?) WHERE idx <= ?", [run_id, end])
    hours = math.nan
    if t_end is not None and t_end[0] is not None:
        hours = (int(row[1]) - int(t_end[0])) / 3600.0
    return float(row[0]), hours


def rolling(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    metric: str = "ndcg10",
    window: int = 500,
    *,
    max_points: int = 2000,
) -> pd.DataFrame:
    """Trailing mean of `metric` over the run, aggregated server-side into at most `max_points`.

    The run's events are cut into ``B = min(max_points, n)`` equal-count buckets of replay order
    (``ntile``); the value at bucket ``j`` is the mean over buckets ``j-k+1..j`` with
    ``k = max(1, round(window / bucket size))``, i.e. a trailing mean over about
    ``max(window, bucket size)`` events (``window_events`` says how many exactly).

    Returns
    -------
    DataFrame
        One row per bucket: ``bucket``, ``first_idx``, ``last_idx``, ``t_start``, ``t_end``,
        ``n_events`` (in the bucket), ``bucket_mean``, ``value`` (the trailing mean),
        ``window_events``.
    """
    run_row(con, run_id)
    expr = metric_column(metric)
    count = fetch_one(con, "SELECT count(*) FROM run_events_of(?)", [run_id])
    n = int(count[0]) if count else 0
    columns = [
        "bucket",
        "first_idx",
        "last_idx",
        "t_start",
        "t_end",
        "n_events",
        "bucket_mean",
        "value",
        "window_events",
    ]
    if n == 0:
        return pd.DataFrame(columns=columns)
    buckets = max(1, min(int(max_points), n))
    frame = con.execute(
        f"WITH e AS (SELECT idx, ts, {expr} AS v, ntile(?) OVER (ORDER BY idx) AS bucket"
        " FROM run_events_of(?))"
        " SELECT bucket, min(idx) AS first_idx, max(idx) AS last_idx, min(ts) AS t_start,"
        " max(ts) AS t_end, count(*) AS n_events, sum(v) AS s FROM e"
        " GROUP BY bucket ORDER BY bucket",
        [buckets, run_id],
    ).df()
    size = n / buckets
    k = max(1, round(window / size))
    sums = frame["s"].rolling(k, min_periods=1).sum()
    counts = frame["n_events"].rolling(k, min_periods=1).sum()
    frame["bucket_mean"] = frame["s"] / frame["n_events"]
    frame["value"] = sums / counts
    frame["window_events"] = counts.astype("int64")
    return frame[columns]


def _summarise(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    metric: str,
    key_sql: str,
    *,
    n_boot: int,
    seed: int,
    n_chunks: int = 50,
) -> pd.DataFrame:
    """Group the run's events by `key_sql` (an SQL expression over ``run_events``) into segments."""
    run_row(con, run_id)
    expr = metric_column(metric)
    chunks = con.execute(
        f"WITH e AS (SELECT idx, ts, ndcg10, hit10, hit50, rr10, {expr} AS v, {key_sql} AS seg"
        " FROM run_events_of(?)),"
        " c AS (SELECT *, ntile(?) OVER (PARTITION BY seg ORDER BY idx) AS chunk FROM e)"
        " SELECT seg, chunk, count(*) AS n, sum(v) AS s, min(idx) AS first_idx,"
        " max(idx) AS last_idx, min(ts) AS t_start, max(ts) AS t_end, sum(ndcg10) AS ndcg10,"
        " sum(CAST(hit10 AS DOUBLE)) AS hit10, sum(CAST(hit50 AS DOUBLE)) AS hit50,"
        " sum(rr10) AS rr10 FROM c GROUP BY seg, chunk ORDER BY first_idx",
        [run_id, n_chunks],
    ).df()
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for seg, part in chunks.groupby("seg", sort=False, dropna=False):
        n = part["n"].to_numpy(dtype=np.float64)
        s = part["s"].to_numpy(dtype=np.float64)
        total = float(n.sum())
        low, high = _chunk_ci(s, n, rng, n_boot)
        row: dict[str, Any] = {
            "segment": None if isinstance(seg, float) and math.isnan(seg) else seg,
            "n_events": int(total),
            "first_idx": int(part["first_idx"].min()),
            "last_idx": int(part["last_idx"].max()),
            "t_start": int(part["t_start"].min()),
            "t_end": int(part["t_end"].max()),
            "value": float(s.sum() / total),
            "ci_low": low,
            "ci_high": high,
        }
        for col in ("ndcg10", "hit10", "hit50", "rr10"):
            row[col] = float(part[col].sum() / total)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in SEGMENT_COLUMNS if c != "order"])
    frame = frame.sort_values("first_idx", kind="stable").reset_index(drop=True)
    frame.insert(1, "order", np.arange(len(frame), dtype=np.int64))
    return frame


def _chunk_ci(
    sums: np.ndarray, counts: np.ndarray, rng: np.random.Generator, n_boot: int
) -> tuple[float, float]:
    """95% percentile interval of sum/count over chunks resampled with replacement."""
    k = len(sums)
    if n_boot <= 0 or k < 2:
        return math.nan, math.nan
    pick = rng.integers(0, k, size=(n_boot, k))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)
