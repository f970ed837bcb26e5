"""Overall metrics and segments over fabricated runs, checked against numpy on the same rows."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from devtools.fabricate import DAY, T0, fabricate_dataset, fabricate_run
from streamsim import metrics, segments, store
from streamsim.errors import StorageError


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=2800, n_days=28, drifts=[(1000, 1099), (2000, 2049)])
    fabricate_run(con, "A", seed=1)
    return con


def _events(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    return con.execute(
        "SELECT idx, ts, rank, ndcg10, hit10, hit50, rr10, is_repeat, is_cold FROM run_events"
        " WHERE run_id = 'A' ORDER BY idx"
    ).fetchnumpy()


def test_overall_matches_numpy(con: duckdb.DuckDBPyConnection) -> None:
    ev = _events(con)
    out = metrics.overall(con, "A")
    assert out["n_events"] == 2800
    assert out["ndcg@10"] == pytest.approx(ev["ndcg10"].mean())
    assert out["hr@10"] == pytest.approx((ev["rank"] <= 10).mean())
    assert out["recall@10"] == out["hr@10"]
    assert out["hr@50"] == pytest.approx((ev["rank"] <= 50).mean())
    assert out["mrr@10"] == pytest.approx(np.where(ev["rank"] <= 10, 1 / ev["rank"], 0).mean())
    rep = ev["is_repeat"].astype(bool)
    assert out["ndcg@10.repeat"] == pytest.approx(ev["ndcg10"][rep].mean())
    assert out["ndcg@10.explore"] == pytest.approx(ev["ndcg10"][~rep].mean())
    assert out["share.repeat"] + out["share.explore"] == pytest.approx(1.0)
    cold = ev["is_cold"].astype(bool)
    assert out["hr@10.cold"] == pytest.approx((ev["rank"][cold] <= 10).mean())


def test_unknown_run_and_metric(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(StorageError, match="unknown run 'nope'"):
        metrics.overall(con, "nope")
    with pytest.raises(metrics.MetricError, match="unknown metric 'ndcg@11'"):
        metrics.canonical_metric("ndcg@11")
    assert metrics.canonical_metric("Recall@10") == "hr@10"


def test_quartiles_equal_counts_and_boundaries(con: duckdb.DuckDBPyConnection) -> None:
    q = segments.quartiles(con, "A")
    assert list(q["segment"]) == ["Q1", "Q2", "Q3", "Q4"]
    assert list(q["n_events"]) == [700] * 4
    assert list(q["first_idx"]) == [0, 700, 1400, 2100]
    assert list(q["last_idx"]) == [699, 1399, 2099, 2799]
    ev = _events(con)
    for k in range(4):
        assert q["value"][k] == pytest.approx(ev["ndcg10"][700 * k : 700 * (k + 1)].mean())
        assert q["ci_low"][k] <= q["value"][k] <= q["ci_high"][k]


def test_calendar_day_week_and_weekpart(con: duckdb.DuckDBPyConnection) -> None:
    day = segments.calendar(con, "A", "day")
    assert len(day) == 28
    assert day["segment"][0] == "2023-11-15"
    assert day["n_events"].sum() == 2800
    week = segments.calendar(con, "A", "week")
    # T0 is a Wednesday: the first ISO week starts on Monday 2023-11-13
    assert week["segment"][0] == "2023-11-13"
    assert week["n_events"][0] == 5 * 100
    wp = segments.weekpart(con, "A")
    assert list(wp["segment"]) == ["weekday", "weekend"]
    ev = _events(con)
    weekday = ((ev["ts"] // DAY) + 3) % 7
    weekend = weekday >= 5
    assert wp["n_events"][1] == weekend.sum() == 800
    assert wp["value"][1] == pytest.approx(ev["ndcg10"][weekend].mean())
    with pytest.raises(ValueError, match="'day' or 'week'"):
        segments.calendar(con, "A", "month")  # type: ignore[arg-type]


def test_weekpart_split_before_between_and_after_each_change(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ev = _events(con)
    cuts = segments.change_cuts(con, "synth")
    assert cuts == [int(ev["ts"][1000]), int(ev["ts"][2000])]  # the fixture's two drifts
    wp = segments.weekpart_periods(con, "A", cuts)
    assert wp["n_events"].sum() == 2800
    weekend = ((ev["ts"] // DAY) + 3) % 7 >= 5
    period = np.searchsorted(np.array(cuts), ev["ts"], side="right")
    expected = []
    for p, when in enumerate(["before 2023-11-25", "2023-11-25 to 2023-12-05", "from 2023-12-05"]):
        for part, mask in (("weekday", ~weekend), ("weekend", weekend)):
            sel = (period == p) & mask
            if sel.any():
                expected.append((f"{part}, {when}", int(sel.sum()), ev["ndcg10"][sel].mean()))
    assert list(wp["segment"]) == [e[0] for e in expected]
    assert list(wp["n_events"]) == [e[1] for e in expected]
    assert list(wp["value"]) == pytest.approx([e[2] for e in expected])
    plain = segments.weekpart_periods(con, "A", [])
    assert list(plain["segment"]) == ["weekday", "weekend"]
    # a recurring regime splits at its first switch only; new items are no interest change
    store.add_known_changes(
        con, "synth", [("recurring", T0 + 3 * DAY, T0 + 3 * DAY), ("recurring", T0 + 5 * DAY,
                       T0 + 5 * DAY), ("new_items", T0 + 6 * DAY, T0 + 6 * DAY)],
    )  # fmt: skip
    assert segments.change_cuts(con, "synth") == sorted([T0 + 3 * DAY, *cuts])


def test_drift_windows_bounds_and_recovery() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=3000, drifts=[(1000, 1099)])
    # good before the drift, bad in the transition and the first 300 events after, good again
    ranks = np.full(3000, 1)
    ranks[1000:1400] = 100
    fabricate_run(con, "A", ranks=ranks)
    w = segments.drift_windows(con, "A", "synth", rolling_window=100, eps=0.05)
    assert list(w["window"]) == ["pre", "transition", "early_post", "late_post"]
    width = int(w["width"][0])
    assert width == (3000 - 1100) // 10
    assert list(w["first_idx"]) == [1000 - width, 1000, 1100, 1100 + width]
    assert list(w["last_idx"]) == [999, 1099, 1099 + width, 1099 + 3 * width]
    assert w["value"][0] == pytest.approx(1.0)
    assert w["value"][1] == pytest.approx(0.0)
    # rolling mean of the last 100 post-drift events reaches >= 0.95 once 95 of them are good:
    # 300 bad post-drift events, then 95 good ones
    assert w["recovery_events"][0] == 300 + 95
    assert w["recovery_hours"][0] > 0


def test_drift_windows_never_recovers_is_nan() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=2000, drifts=[(500, 599)])
    ranks = np.where(np.arange(2000) < 500, 1, 100)
    fabricate_run(con, "A", ranks=ranks)
    w = segments.drift_windows(con, "A", "synth", rolling_window=50)
    assert math.isnan(w["recovery_events"][0])
    # a drift outside the run's stream is not reported
    fabricate_run(con, "late", ranks=np.ones(1000, dtype=np.int64), start_idx=1000)
    assert segments.drift_windows(con, "late", "synth").empty


def test_rolling_aggregates_to_max_points(con: duckdb.DuckDBPyConnection) -> None:
    r = segments.rolling(con, "A", "ndcg@10", 100, max_points=280)
    assert len(r) == 280
    assert r["n_events"].sum() == 2800
    ev = _events(con)
    # buckets of 10 events, window of 10 buckets = the trailing 100 events
    assert r["value"].iloc[-1] == pytest.approx(ev["ndcg10"][-100:].mean())
    assert r["window_events"].iloc[-1] == 100
    assert r["t_start"].iloc[0] == T0
    small = segments.rolling(con, "A", "hr@10", 10, max_points=5000)
    assert len(small) == 2800
    assert small["bucket_mean"].to_numpy() == pytest.approx(ev["hit10"].astype(float))
