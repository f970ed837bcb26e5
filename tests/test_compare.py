"""Run comparison: bootstrap with known answers, scipy tests, Holm, event checks, CLI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from devtools.fabricate import copy_run, fabricate_dataset, fabricate_run
from streamsim import compare, store
from streamsim.cli import app


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=2800, n_days=28)
    fabricate_run(con, "base", policy="reset", seed=1)
    return con


def test_identical_runs_ci_contains_zero(con: duckdb.DuckDBPyConnection) -> None:
    fabricate_run(con, "same", policy="continual", seed=1)
    c = compare.compare(con, ["base", "same"])
    (p,) = c.pairs
    assert p.mean_diff == 0.0
    assert p.ci_low <= 0.0 <= p.ci_high
    assert p.wilcoxon_p == 1.0
    assert p.mcnemar_b == p.mcnemar_c == 0
    assert p.mcnemar_p == 1.0
    assert p.verdict == "no significant difference"
    assert p.n_segments == 28


def test_constant_shift_ci_around_shift(con: duckdb.DuckDBPyConnection) -> None:
    copy_run(con, "base", "shifted", policy="continual", ndcg_shift=0.1)
    c = compare.compare(con, ["base", "shifted"], segment="day", block=7, n_boot=2000)
    (p,) = c.pairs
    assert p.mean_diff == pytest.approx(0.1)
    assert p.ci_low == pytest.approx(0.1)
    assert p.ci_high == pytest.approx(0.1)
    assert p.verdict == "better"
    assert p.wilcoxon_p < 0.001
    assert "continual vs reset: better" in c.verdict


def test_noisy_shift_ci_covers_truth() -> None:
    rng = np.random.default_rng(5)
    d = 0.1 + rng.normal(0, 0.05, 60)
    low, high = compare.bootstrap_mean_ci(d, block=7, n_boot=2000, rng=rng)
    assert low < d.mean() < high
    assert low > 0.05
    assert high < 0.15
    # coverage of the true shift over independent replicate series is close to 95%
    covered = 0
    for _ in range(200):
        d = 0.1 + rng.normal(0, 0.05, 60)
        low, high = compare.bootstrap_mean_ci(d, block=7, n_boot=400, rng=rng)
        covered += low < 0.1 < high
    assert 0.85 <= covered / 200 <= 0.99


def test_moving_block_indices_are_consecutive_blocks() -> None:
    rng = np.random.default_rng(0)
    picks = compare.moving_block_bootstrap(np.zeros(10), block=3, n_boot=50, rng=rng)
    assert picks.shape == (50, 10)
    assert picks.min() >= 0
    assert picks.max() <= 9
    # within a block positions increase by one: positions 0-1-2, 3-4-5, 6-7-8 of each resample
    for start in (0, 3, 6):
        assert np.all(np.diff(picks[:, start : start + 3], axis=1) == 1)
    # a block longer than half the series is clipped to half of it: 2 blocks of 2 out of 4
    clipped = compare.moving_block_bootstrap(np.zeros(4), block=7, n_boot=200, rng=rng)
    assert np.all(np.diff(clipped[:, :2], axis=1) == 1)
    assert np.all(np.diff(clipped[:, 2:], axis=1) == 1)
    assert set(clipped[:, 0].tolist()) == {0, 1, 2}


def test_mcnemar_exact_and_chi2() -> None:
    stat, p, method = compare.mcnemar(2, 10)
    assert method == "exact"
    assert p == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue)
    stat, p, method = compare.mcnemar(30, 60)
    assert method == "chi2"
    assert stat == pytest.approx((30 - 1) ** 2 / 90)
    assert p == pytest.approx(stats.chi2.sf(stat, 1))
    assert compare.mcnemar(0, 0) == (0.0, 1.0, "none")


def test_holm() -> None:
    adj = compare.holm_adjust([0.01, 0.04, 0.03])
    assert adj == pytest.approx([0.03, 0.06, 0.06])
    assert compare.holm_adjust([0.5, float("nan")])[0] == 0.5


def test_t_interval_over_seeds() -> None:
    from streamsim.stats import t_interval

    low, high, p = t_interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert p == pytest.approx(0.0742, abs=1e-4)  # one-sample t = 2 / (1 / sqrt 3), 2 df
    assert t_interval(np.array([0.5, 0.5]))[2] == 1.0
    assert all(np.isnan(t_interval(np.array([1.0]))))


def test_three_runs_use_holm_and_user_tests(con: duckdb.DuckDBPyConnection) -> None:
    copy_run(con, "base", "up", policy="continual", ndcg_shift=0.05)
    fabricate_run(con, "other", policy="none", seed=9)
    c = compare.compare(con, ["base", "up", "other"], segment="week")
    assert c.holm
    up, other = c.pairs
    ps = [up.wilcoxon_p, other.wilcoxon_p]
    assert [up.wilcoxon_p_holm, other.wilcoxon_p_holm] == pytest.approx(compare.holm_adjust(ps))
    assert up.n_users == 60
    assert up.user_mean_diff == pytest.approx(0.05)
    assert up.user_wilcoxon_p < 0.001
    doc = c.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["baseline"] == "base"
    assert len(doc["segments"]) == 5


def test_a_win_must_survive_holm_when_many_runs_are_compared(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A small noisy gain: its 95% CI excludes 0 (a win in a two-run compare), but beside four
    more comparisons the Holm-adjusted bootstrap p-value does not stay below 0.05."""
    copy_run(con, "base", "up", policy="continual")
    day_noise = "0.02 * ((CAST(floor(ts / 86400) AS BIGINT) * 7919) % 13 - 6) / 6.0"
    con.execute(f"UPDATE run_events SET ndcg10 = ndcg10 + 0.0022 + {day_noise} WHERE run_id = 'up'")
    (two,) = compare.compare(con, ["base", "up"]).pairs
    assert two.ci_low > 0
    assert 0 < two.bootstrap_p < 0.05  # percentile duality: the CI excludes 0
    assert two.verdict == "better"
    for k in range(4):
        copy_run(con, "base", f"same{k}", policy=f"none{k}")
    many = compare.compare(con, ["base", "up", "same0", "same1", "same2", "same3"])
    up = many.pairs[0]
    assert (up.ci_low, up.ci_high, up.bootstrap_p) == (two.ci_low, two.ci_high, two.bootstrap_p)
    assert up.bootstrap_p_holm == pytest.approx(5 * two.bootstrap_p)
    assert up.verdict == "no significant difference"
    assert "bootstrap p (Holm)=0.1" in many.verdict


def test_bootstrap_p_is_dual_to_the_interval() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.01, 0.02, 0.05):
        d = shift + rng.normal(0, 0.05, 40)
        low, high, p = compare.bootstrap_mean_test(
            d, block=7, n_boot=2000, rng=np.random.default_rng(1)
        )
        assert (low > 0 or high < 0) == (p < 0.05)
    assert compare.bootstrap_mean_test(np.zeros(10), block=3, n_boot=100, rng=rng)[2] == 1.0
    assert np.isnan(compare.bootstrap_mean_test(np.ones(1), block=3, n_boot=100, rng=rng)[2])


def test_mismatched_runs_raise(con: duckdb.DuckDBPyConnection) -> None:
    fabricate_run(con, "short", seed=2, start_idx=100)
    with pytest.raises(compare.ComparisonError, match="not over the same events.*100 only in"):
        compare.compare(con, ["base", "short"])
    with pytest.raises(compare.ComparisonError, match="at least two runs"):
        compare.compare(con, ["base"])
    with pytest.raises(compare.ComparisonError, match="unknown segment 'month'"):
        compare.compare(con, ["base", "short"], segment="month")


def test_other_dataset_targets_raise(con: duckdb.DuckDBPyConnection) -> None:
    fabricate_dataset(con, "other", n_events=2800, n_days=28, seed=3)
    fabricate_run(con, "elsewhere", dataset="other")
    with pytest.raises(compare.ComparisonError, match="with a different user or target"):
        compare.compare(con, ["base", "elsewhere"])


def test_cli_compare_json_and_table(workspace: store.Workspace) -> None:
    con = workspace.connect()
    fabricate_dataset(con, n_events=700, n_days=7)
    fabricate_run(con, "r1", policy="reset")
    copy_run(con, "r1", "r2", policy="continual", ndcg_shift=0.02)
    con.close()
    runner = CliRunner()
    res = runner.invoke(app, ["compare", "r1", "r2", "--json", "--segment", "day", "--block", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["pairs"][0]["mean_diff"] == pytest.approx(0.02)
    res = runner.invoke(app, ["compare", "r1", "r2"])
    assert res.exit_code == 0, res.output
    assert "continual vs reset: better" in res.output
    assert "95% CI" in res.output
    # the per-day differences: one row per day, each +0.0200 (the constant shift)
    assert "ndcg@10 per day: reset and the paired differences" in res.output
    assert res.output.count("+0.0200") >= 7
    res = runner.invoke(app, ["compare", "r1", "missing"])
    assert res.exit_code == 1
    assert "unknown run 'missing'" in res.output


def test_compare_and_dashboard_on_engine_runs(tmp_path: Path) -> None:
    """Real runs from the replay pipeline (tiny T2ARec on toy data): compare prints the CI and
    p-values, the dashboard builds from the engine's tables."""
    from dashboards.page import build_dashboard
    from streamsim.pipeline import prepare, replay_policy
    from tests.support.tiny_scenario import POLICIES, setup, tiny_scenario

    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    ids = [
        replay_policy(con, ws, sc, p, prepared, progress=lambda *_: None)  # type: ignore[arg-type]
        for p in POLICIES[1:3]  # reset, continual
    ]
    page = build_dashboard(con, ids)  # type: ignore[arg-type]
    assert "continual vs reset:" in page
    con.close()  # type: ignore[attr-defined]
    res = CliRunner().invoke(
        app, ["--store", str(ws.root), "compare", *ids, "--block", "3", "--n-boot", "500"]
    )
    assert res.exit_code == 0, res.output
    assert "continual vs reset:" in res.output
    assert "95% CI [" in res.output
    assert "Wilcoxon p=" in res.output
    assert "McNemar" in res.output


def test_runs_of_different_models_are_labelled_model_slash_policy(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Two models' frozen runs would both read "none": the labels name the model wherever the
    runs' models differ (compare, dashboard legends and header), and the run id when a label
    would still repeat."""
    from dashboards import data
    from dashboards.page import build_dashboard

    fabricate_run(con, "sas-none", policy="none", model="sasrec", seed=2)
    fabricate_run(con, "t2a-none", policy="none", model="t2arec", seed=3)
    c = compare.compare(con, ["sas-none", "t2a-none"])
    assert c.labels == ("sasrec/none", "t2arec/none")
    assert "t2arec/none vs sasrec/none" in c.verdict
    assert data.run_labels(con, ["sas-none", "t2a-none"]) == {
        "sas-none": "sasrec/none", "t2a-none": "t2arec/none",
    }  # fmt: skip
    fabricate_run(con, "t2a-none-2", policy="none", model="t2arec", seed=4)
    assert compare.compare(con, ["t2a-none", "t2a-none-2"]).labels == (
        "none (t2a-none)", "none (t2a-none-2)",
    )  # fmt: skip
    page = build_dashboard(con, ["sas-none", "t2a-none"])
    assert "<dt>models</dt><dd>sasrec (checkpoint" in page
    assert "t2arec (checkpoint" in page
    assert "<title>streamsim · fabricated · sasrec/none, t2arec/none</title>" in page


def test_some_days_only(con: duckdb.DuckDBPyConnection) -> None:
    """A run equal to the baseline on weekdays and perfect on weekend days: per weekday no
    difference at all; per weekend day a positive one, and the per-user and McNemar statistics
    count only weekend events; before/after a date split the days the same way."""
    day = compare.DAY
    rows = con.execute("SELECT idx, ts, rank FROM run_events_of('base') ORDER BY idx").fetchall()
    ts = np.array([r[1] for r in rows])
    weekend = (ts // day + 3) % 7 >= 5
    ranks = np.where(weekend, 1, np.array([r[2] for r in rows]))
    fabricate_run(con, "weekends", policy="continual", seed=1, ranks=ranks)
    weekday = compare.compare(con, ["base", "weekends"], segment="weekday")
    (p,) = weekday.pairs
    assert (p.mean_diff, p.mcnemar_b, p.mcnemar_c) == (0.0, 0, 0)
    assert p.n_segments == 20  # 28 days, 4 weekends
    (w,) = compare.compare(con, ["base", "weekends"], segment="weekend").pairs
    assert w.n_segments == 8
    assert w.mean_diff > 0.5
    missed_on_weekends = int((weekend & (np.array([r[2] for r in rows]) > 10)).sum())
    assert (w.mcnemar_b, w.mcnemar_c) == (missed_on_weekends, 0)
    assert "per day, weekend days only" in compare.compare(
        con, ["base", "weekends"], segment="weekend"
    ).verdict
    first_day = int(ts.min() // day * day)
    cut = datetime.fromtimestamp(first_day + 14 * day, tz=timezone.utc).strftime("%Y-%m-%d")
    before = compare.compare(con, ["base", "weekends"], segment=f"before:{cut}")
    after = compare.compare(con, ["base", "weekends"], segment=f"after:{cut}")
    assert before.pairs[0].n_segments + after.pairs[0].n_segments == 28
    assert len(before.segments) == 14
    for bad, match in (("before:2024-01-01T12:00:00", "a UTC midnight"), ("hourly", "unknown")):
        with pytest.raises(compare.ComparisonError, match=match):
            compare.compare(con, ["base", "weekends"], segment=bad)


def test_change_aligned_segments_are_the_windows_around_each_change() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=2800, n_days=28, drifts=[(1000, 1100), (2000, 2000)])
    fabricate_run(con, "base", policy="reset", seed=1)
    copy_run(con, "base", "up", policy="continual", ndcg_shift=0.1)
    c = compare.compare(con, ["base", "up"], segment="change-aligned")
    labels = list(c.segments["segment"])
    assert labels[:4] == ["0:pre", "0:transition", "0:early_post", "0:late_post"]
    assert {x.split(":")[0] for x in labels} == {"0", "1"}
    (p,) = c.pairs
    assert p.n_segments == len(labels)
    assert p.mean_diff == pytest.approx(0.1)
    fabricate_dataset(con, "plain", n_events=500, n_days=5)
    fabricate_run(con, "p1", dataset="plain", policy="none", seed=1)
    fabricate_run(con, "p2", dataset="plain", policy="reset", seed=2)
    with pytest.raises(compare.ComparisonError, match="cover no change point"):
        compare.compare(con, ["p1", "p2"], segment="change-aligned")
