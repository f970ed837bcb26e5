"""Dashboard figure functions on small hand-made frames, and the assembled HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from typer.testing import CliRunner

from dashboards import figures
from dashboards.page import build_dashboard, default_path, write_dashboard
from devtools.fabricate import DAY, T0, copy_run, fabricate_dataset, fabricate_run
from streamsim import store
from streamsim.cli import app
from streamsim.errors import StorageError

EVIL = "<script>document.body.setAttribute('data-pwned','1')</script>\"'&"


def _rolling(runs: list[str]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for metric in ("ndcg@10", "hr@10"):
            for b in range(5):
                rows.append(
                    {
                        "run": run,
                        "metric": metric,
                        "t_start": T0 + b * DAY,
                        "t_end": T0 + (b + 1) * DAY - 1,
                        "first_idx": 10 * b,
                        "last_idx": 10 * b + 9,
                        "n_events": 10,
                        "window_events": 10,
                        "value": 0.1 * b,
                    }
                )
    return pd.DataFrame(rows)


def test_rolling_figure_traces_drifts_and_alarms() -> None:
    drifts = pd.DataFrame(
        {
            "drift_id": [0, 1],
            "kind": ["sudden", "gradual"],
            "start_ts": [T0 + DAY, T0 + 3 * DAY],
            "end_ts": [T0 + DAY + 3600, T0 + 4 * DAY],
        }
    )
    alarms = pd.DataFrame(
        {
            "run": ["reset", "continual"],
            "detector": ["adwin", "ddm"],
            "signal": ["rr10", "miss10"],
            "idx": [12, 33],
            "ts": [T0 + DAY + 7200, T0 + 3 * DAY + 60],
        }
    )
    fig = figures.rolling_figure(_rolling(["reset", "continual"]), drifts, alarms)
    lines = [t for t in fig.data if t.mode == "lines"]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(lines) == 4  # 2 runs x (NDCG, HR)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert len(markers) == 2
    # alarms sit at their timestamps, on the alarm row, in the run's legend group
    reset_alarm = next(t for t in markers if t.legendgroup == "reset")
    assert pd.Timestamp(reset_alarm.x[0]) == pd.Timestamp("2023-11-16 02:00:00")
    assert list(reset_alarm.y) == ["adwin:rr10"]
    assert reset_alarm.yaxis == "y3"
    # drift windows: one shaded rectangle per drift spanning its start..end
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) >= 2
    x0s = sorted({pd.Timestamp(s.x0) for s in rects})
    x1s = sorted({pd.Timestamp(s.x1) for s in rects})
    assert x0s == [pd.Timestamp("2023-11-16 00:00:00"), pd.Timestamp("2023-11-18 00:00:00")]
    assert x1s == [pd.Timestamp("2023-11-16 01:00:00"), pd.Timestamp("2023-11-19 00:00:00")]
    # the x of a line point is the end of its bucket, hover names window, events and value
    first = lines[0]
    assert pd.Timestamp(first.x[0]) == pd.Timestamp("2023-11-15 23:59:59")
    assert "events" in first.hovertemplate
    assert "window ending in" in first.hovertemplate
    assert fig.layout.yaxis.title.text == "NDCG@10"
    assert fig.layout.yaxis2.title.text == "HR@10"
    assert fig.layout.xaxis3.title.text == "time (UTC)"
    # legend: one entry per run, toggling all of its traces
    assert sum(bool(t.showlegend) for t in fig.data) == 2
    # without alarms there is no alarm row, and the time axis is on the second row
    quiet = figures.rolling_figure(_rolling(["reset"]), drifts, alarms.iloc[0:0])
    assert len(quiet.data) == 2
    assert quiet.layout.xaxis2.title.text == "time (UTC)"
    assert "xaxis3" not in quiet.layout.to_plotly_json()


def test_segment_figure_bars_with_cis() -> None:
    frame = pd.DataFrame(
        {
            "run": ["a", "a", "b", "b"],
            "segment": ["Q1", "Q2", "Q1", "Q2"],
            "value": [0.2, 0.3, 0.25, 0.35],
            "ci_low": [0.15, 0.25, 0.2, 0.3],
            "ci_high": [0.3, 0.32, 0.3, 0.4],
            "n_events": [5, 5, 5, 5],
            "t_start": [T0] * 4,
            "t_end": [T0 + DAY] * 4,
        }
    )
    fig = figures.segment_figure(frame, title="quartiles")
    assert len(fig.data) == 2
    bar = fig.data[0]
    assert list(bar.x) == ["Q1", "Q2"]
    assert list(bar.error_y.array) == pytest.approx([0.1, 0.02])
    assert list(bar.error_y.arrayminus) == pytest.approx([0.05, 0.05])
    assert fig.layout.yaxis.title.text == "NDCG@10"
    assert fig.layout.xaxis.title.text == "segment"


def test_drift_mix_tta_throughput_figures() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=1200, drifts=[(400, 450)])
    fabricate_run(con, "r1", policy="reset")
    fabricate_run(con, "r2", policy="none", seed=2, adapts=False)
    from dashboards import data

    windows = data.segment_frame(con, ["r1", "r2"], "drift", dataset="synth", n_boot=50)
    fig = figures.drift_figure(windows)
    assert len(fig.data) == 4  # per run: window bars + recovery bars
    assert list(fig.data[0].x[1]) == ["pre", "transition", "early_post", "late_post"]
    targets, top1 = data.mix_frames(con, ["r1", "r2"], "synth", buckets=10)
    shares = targets.groupby("bucket")["share"].sum()
    assert shares.to_numpy() == pytest.approx(np.ones(10))
    fig = figures.mix_figure(targets, top1)
    assert len(fig.layout.annotations) == 3  # targets, top-1 of reset, top-1 of none
    assert {t.stackgroup for t in fig.data} == {"mix1", "mix2", "mix3"}
    health, deltas = data.batch_frames(con, ["r1", "r2"], max_points=5)
    assert len(health[health["run"] == "reset"]) == 5
    fig = figures.tta_figure(health, deltas)
    # reset: loss before, after, distance, step size, Δ histogram; none (no step): distance
    assert len(fig.data) == 5 + 1
    assert fig.layout.xaxis2.title.text == "mean Δ_{n+1}"
    tp = data.throughput_frame(con, ["r1", "r2"])
    fig = figures.throughput_figure(tp)
    assert [t.name for t in fig.data] == list(figures.STAGES)
    adapt = fig.data[0]
    r2 = tp[(tp["run"] == "none") & (tp["stage"] == "adapt")]
    assert adapt.x[1] == pytest.approx(1000 * r2["seconds"].iloc[0] / 1200)
    assert fig.layout.xaxis.title.text == "seconds per 1,000 events"


def test_forgetting_probe_row_at_the_probe_points() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=1200, n_days=12)
    fabricate_run(con, "r1", policy="continual")
    fabricate_run(con, "r2", policy="none", seed=2, adapts=False)
    con.execute(
        "UPDATE run_batches SET probe_ndcg10 = 0.3 - 0.001 * batch_id,"
        " forgetting_ndcg10 = 0.001 * batch_id, forgetting_se = 0.0005"
        " WHERE run_id = 'r1' AND batch_id % 4 = 3"
    )
    from dashboards import data

    probes = data.probe_frame(con, ["r1", "r2"])
    assert set(probes["run"]) == {"continual"}  # r2 has no probe points
    expected_t = con.execute(
        "SELECT t_end FROM run_batches WHERE run_id = 'r1' AND batch_id % 4 = 3 ORDER BY batch_id"
    ).fetchall()
    health, deltas = data.batch_frames(con, ["r1", "r2"], max_points=5)
    without = figures.tta_figure(health, deltas)
    fig = figures.tta_figure(health, deltas, probes)
    assert len(fig.data) == len(without.data) + 1
    (row3,) = [t for t in fig.data if t.yaxis == "y5"]
    assert list(row3.x) == list(figures.to_datetime([t for (t,) in expected_t]))
    assert row3.y[0] == pytest.approx(0.003)
    assert list(row3.error_y.array) == pytest.approx([0.0005] * len(expected_t))
    assert fig.layout.yaxis5.title.text == "Δ NDCG@10"
    assert "forgetting" in fig.layout.annotations[-1].text


def test_diversity_row_when_the_runs_recorded_it() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=1200, n_days=12)
    fabricate_run(con, "r1", policy="continual")
    con.execute(
        "INSERT INTO run_signals SELECT run_id, batch_id, 'rec_gini', 0.9 + 0.001 * batch_id"
        " FROM run_batches WHERE run_id = 'r1' UNION ALL SELECT run_id, batch_id,"
        " 'top1_entropy', 2.0 FROM run_batches WHERE run_id = 'r1'"
    )
    con.execute(
        "UPDATE run_batches SET probe_ndcg10 = CASE WHEN batch_id % 4 = 3 THEN 0.2 END,"
        " forgetting_ndcg10 = CASE WHEN batch_id % 4 = 3 THEN 0.01 END WHERE run_id = 'r1'"
    )
    from dashboards import data

    health, deltas = data.batch_frames(con, ["r1"], max_points=5)
    assert health["rec_gini"].notna().all()
    fig = figures.tta_figure(health, deltas, data.probe_frame(con, ["r1"]))
    by_axis = {t.yaxis: t for t in fig.data}
    assert by_axis["y5"].y == pytest.approx(list(health["rec_gini"]))  # row 3, left: Gini
    assert list(by_axis["y6"].y) == pytest.approx([2.0] * 5)  # row 3, right: top-1 entropy
    assert by_axis["y7"].y[0] == pytest.approx(0.01)  # row 4: forgetting
    assert fig.layout.yaxis5.title.text == "Gini"
    assert fig.layout.yaxis7.title.text == "Δ NDCG@10"


def test_paired_figure_daily_differences_and_ci_band() -> None:
    con = store.connect_memory()
    fabricate_dataset(con, n_events=1400, n_days=14)
    fabricate_run(con, "r1", policy="reset")
    copy_run(con, "r1", "r2", policy="continual", ndcg_shift=0.05)
    from dashboards import data

    frame = data.paired_frame(con, ["r1", "r2"])
    assert len(frame) == 14
    assert frame["diff"].to_numpy() == pytest.approx(np.full(14, 0.05))
    assert (frame["b"] == 0).all()
    assert (frame["mcnemar_p"] == 1.0).all()
    assert data.paired_frame(con, ["r1"]).empty
    intervals = pd.DataFrame(
        {"run": ["continual"], "mean_diff": [0.05], "ci_low": [0.04], "ci_high": [0.06]}
    )
    fig = figures.paired_figure(frame, intervals, baseline="reset")
    assert len(fig.data) == 3  # daily markers, 7-day average, daily McNemar p
    assert pd.Timestamp(fig.data[0].x[0]) == pd.Timestamp(
        pd.to_datetime(frame["t_end"].iloc[0], unit="s")
    )
    band = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(band) == 1
    assert (band[0].y0, band[0].y1) == (0.04, 0.06)
    lines = sorted(s.y0 for s in fig.layout.shapes if s.type == "line")
    assert lines == [0.0, 0.05, 0.05]  # zero, the mean difference, p = 0.05
    assert fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis.title.text == "Δ NDCG@10"


def test_text_escapes_markup() -> None:
    assert figures.text("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    assert figures.text('a"b') == 'a"b'
    assert "%{" not in figures.text("%{x}")


@pytest.fixture
def evil_con() -> duckdb.DuckDBPyConnection:
    con = store.connect_memory()
    fabricate_dataset(
        con,
        "synth",  # dataset names cannot hold markup (the store refuses them, tested below)
        n_events=1400,
        n_days=14,
        drifts=[(500, 560)],
        category_names=[EVIL, "plain", "a&b", "c'd", 'e"f'],
        item_name=EVIL,
    )
    fabricate_run(con, "base", scenario=EVIL, policy="reset", alarms=[("adwin", "rr10", 700)])
    copy_run(con, "base", EVIL, policy=EVIL, ndcg_shift=0.01)
    return con


def test_page_is_self_contained_and_escaped(evil_con: duckdb.DuckDBPyConnection) -> None:
    page = build_dashboard(evil_con, ["base", EVIL], title_info={"command": EVIL})
    # plotly.js embedded exactly once, nothing fetched from the network
    panels = re.findall(r'<section class="panel" id="section-(\w+)"', page)
    assert panels == [
        "rolling",
        "paired",
        "quartiles",
        "weekpart",
        "drift",
        "mix",
        "shifted",
        "tta",
        "throughput",
    ]
    assert page.count('class="plotly-graph-div"') == len(panels)
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]+src=", page)
    body = page.split("</head>", 1)[1]
    assert "https://" not in body
    assert "http://" not in body
    # user strings never appear as markup: the only <script> tags are ours
    assert "data-pwned" in page
    assert "<script>document" not in page
    assert page.count("<script") == 1 + len(panels)  # plotly.js + one per panel
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;" in page
    # the header states scenario, fingerprint, model, policies and the verdict
    fp = evil_con.execute("SELECT fingerprint FROM datasets").fetchall()[0][0]
    assert fp in page
    assert "&lt;script&gt;document" in page.split("compare:</strong>")[0]  # the scenario name
    with pytest.raises(StorageError, match="dataset name must be letters"):
        fabricate_dataset(store.connect_memory(), EVIL)
    assert "toy (checkpoint ckpt0)" in page
    assert "compare:</strong>" in page
    assert "vs reset: better" in page


def test_write_dashboard_and_cli(workspace: store.Workspace, tmp_path: Path) -> None:
    con = workspace.connect()
    fabricate_dataset(con, n_events=700, n_days=7)
    fabricate_run(con, "r1", policy="reset")
    fabricate_run(con, "r2", policy="continual", seed=5)
    path = write_dashboard(con, ["r1"], tmp_path / "sub" / "one.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert "single run" in path.read_text()
    con.close()
    runner = CliRunner()
    res = runner.invoke(app, ["dashboard", "r1", "r2"])
    assert res.exit_code == 0, res.output
    out = Path(res.output.strip())
    assert out == default_path(workspace.root / "dashboards", ["r1", "r2"])
    assert out.is_file()
    res = runner.invoke(app, ["dashboard", "r1", "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.html").is_file()
    res = runner.invoke(app, ["dashboard", "nope"])
    assert res.exit_code == 1
    assert "unknown run 'nope'" in res.output
    assert default_path(tmp_path, ["../a b", "<c>"]).name == "a-b_-c.html"


def test_drift_markers_stay_on_the_replayed_time_span() -> None:
    from dashboards import data

    con = store.connect_memory()
    fabricate_dataset(con, n_events=1400, n_days=14, drifts=[(100, 120), (900, 960)])
    fabricate_run(con, "late", start_idx=700)
    assert data.drifts_frame(con, "synth")["start_idx"].tolist() == [100, 900]
    assert data.drifts_frame(con, "synth", ["late"])["start_idx"].tolist() == [900]


def test_shifted_users_table_says_when_there_is_no_ground_truth() -> None:
    frame = pd.DataFrame(
        {
            "run": ["toy/none", EVIL],
            "user_id": [7, 3],
            "flagged": [4, 2],
            "requests": [5, 5],
            "last_ts": [T0, T0 + DAY],
            "auroc": [0.512, float("nan")],
        }
    )
    fig = figures.shifted_figure(frame)
    (table,) = fig.data
    cells = table.cells.values
    assert list(cells[1]) == ["7", "3"]
    assert list(cells[2]) == ["4 of 5", "2 of 5"]
    assert list(cells[3]) == ["2023-11-15 00:00", "2023-11-16 00:00"]
    assert list(cells[4]) == ["0.512 (chance 0.5)", "no ground truth"]
    assert "<script>" not in cells[0][1]  # escaped like every user string


def test_page_splits_weekparts_at_changes_inside_the_replay_and_lists_shifted_users() -> None:
    from dashboards import data
    from dashboards.page import build_figures

    con = store.connect_memory()
    fabricate_dataset(con, n_events=1400, n_days=14, drifts=[(100, 120), (900, 960)])
    fabricate_run(con, "late", start_idx=700)
    assert data.changes_inside(con, "synth", ["late"]) == [
        int(con.execute("SELECT ts FROM events WHERE idx = 900").fetchone()[0])  # type: ignore[index]
    ]  # the change at idx 100 lies before the replay: it splits nothing
    figs = build_figures(con, ["late"])
    names = {trace.x[k] for trace in figs["weekpart"].data for k in range(len(trace.x))}
    assert any(n.endswith("before 2023-11-24") for n in names), names
    assert any(n.endswith("from 2023-11-24") for n in names), names
    shifted = figs["shifted"].data[0].cells.values
    assert len(shifted[0]) == 10
    assert set(shifted[4]) == {"no ground truth"}  # fabricated data has no regimes


def test_a_run_on_data_replaced_since_is_flagged(workspace: store.Workspace) -> None:
    from dashboards.page import build_dashboard
    from streamsim.runs import data_warning

    con = workspace.connect()
    fabricate_dataset(con, n_events=700, n_days=7, seed=0)
    fabricate_run(con, "old")
    assert data_warning(con, "old") is None
    store.delete_dataset(con, "synth")  # e.g. regenerated with another seed under one name
    fabricate_dataset(con, n_events=700, n_days=7, seed=1)
    warning = data_warning(con, "old")
    assert warning is not None
    assert "earlier version of dataset 'synth'" in warning
    assert "earlier version of dataset" in build_dashboard(con, ["old"])
    con.close()
    shown = CliRunner().invoke(app, ["runs", "show", "old", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "earlier version" in json.loads(shown.stdout)["data_warning"]
    text = CliRunner().invoke(app, ["runs", "show", "old"])
    assert text.output.startswith("warning: run old replayed an earlier version")
