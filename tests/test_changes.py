"""Known change points for any dataset: `streamsim datasets changes`, and detector scoring of a
real log's runs against them (detection rate, false alarms, delay in `runs show --json`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamsim.changes import parse_change, weekend_switches
from streamsim.cli import app
from streamsim.errors import StorageError
from streamsim.store import Workspace, dataset_info
from tests.support.tiny_scenario import toy_store_and_scenario
from tests.test_cli_replay import SCENARIO

DAY = 86_400


def invoke(store: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(store), *args])


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_real_logs_runs_are_scored_against_added_changes(tmp_path: Path) -> None:
    store, scenario = toy_store_and_scenario(tmp_path, SCENARIO)
    done = invoke(store, "replay", "-s", str(scenario), "-p", "none", "--json", "--no-dashboard")
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.stdout[done.stdout.index("{") :])["runs"][0]["run_id"]
    before = json.loads(invoke(store, "runs", "show", run_id, "--json").stdout)["detectors"]
    assert all("detected" not in d for d in before)  # no ground truth: alarm counts only

    con = Workspace.resolve(store).connect()
    info = dataset_info(con, "toy")
    con.close()
    at = info.t_min + (info.t_max - info.t_min) * 4 // 5  # inside the replay period (0.6..)
    added = invoke(store, "datasets", "changes", "toy", "--add", iso(at), "--json")
    assert added.exit_code == 0, added.output
    (change,) = json.loads(added.stdout)
    assert (change["kind"], change["drift_type"], change["start_ts"]) == ("sudden", "known", at)

    after = json.loads(invoke(store, "runs", "show", run_id, "--json").stdout)["detectors"]
    for d in after:
        assert d["n_drifts"] == 1
        assert d["detected"] in (0, 1)
        assert d["far_per_10k"] >= 0
        assert {"delay_events", "periodic_detected", "random_detected"} <= set(d)

    cleared = invoke(store, "datasets", "changes", "toy", "--clear", "--json")
    assert json.loads(cleared.stdout) == []


def test_bad_changes_are_one_line_and_store_nothing(tmp_path: Path) -> None:
    store, _ = toy_store_and_scenario(tmp_path, SCENARIO)
    for args, match in (
        (["--add", "soon"], "expected a number or an ISO 8601 date"),
        (["--add", "1990-01-01"], "outside dataset 'toy'"),
        (["--add", "2030-01-01", "--kind", "recurring"], "no weekend switch"),
        (["--add", "2023-11-20", "--kind", "weekly"], "--kind 'weekly': expected one of"),
        (["--add", "2023-11-20..2023-11-21"], "a sudden change is one date"),
        (["--add", "2023-11-20", "--kind", "gradual"], "a gradual change needs START..END"),
    ):
        result = invoke(store, "datasets", "changes", "toy", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: "), result.output
        assert match in result.output, result.output
        assert "Traceback" not in result.output
    assert json.loads(invoke(store, "datasets", "changes", "toy", "--json").stdout) == []
    missing = invoke(store, "datasets", "changes", "nope")
    assert missing.exit_code == 1


def test_a_recurring_change_is_every_weekend_switch() -> None:
    monday = 1_701_648_000  # 2023-12-04T00:00:00Z, a Monday
    switches = weekend_switches(monday + 3600, monday + 14 * DAY)
    assert switches == [monday + 5 * DAY, monday + 7 * DAY, monday + 12 * DAY]
    changes = parse_change("2023-12-04T01:00:00", "recurring", t_max=monday + 14 * DAY - 1)
    assert [c.start_ts for c in changes] == switches
    (window,) = parse_change("2023-12-04..2023-12-06", "gradual", t_max=0)
    assert (window.start_ts, window.end_ts) == (monday, monday + 2 * DAY)
    with pytest.raises(StorageError, match="the end is before the start"):
        parse_change("2023-12-06..2023-12-04", "gradual", t_max=0)


def test_added_changes_travel_with_an_exported_dataset(tmp_path: Path) -> None:
    from streamsim.changes import add_changes, list_changes
    from streamsim.parquet_io import export_dataset, import_dataset

    store, _ = toy_store_and_scenario(tmp_path, SCENARIO)
    con = Workspace.resolve(store).connect()
    info = dataset_info(con, "toy")
    mid = iso((info.t_min + info.t_max) // 2)
    add_changes(con, "toy", [mid])
    add_changes(con, "toy", [f"{mid}..{iso(info.t_max)}"], "gradual")
    export_dataset(con, "toy", tmp_path / "out")
    import_dataset(con, tmp_path / "out", name="toy2")
    strip = ("drift_id",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in list_changes(con, "toy2")] == [
        {k: v for k, v in r.items() if k not in strip} for r in list_changes(con, "toy")
    ]
    assert [r["kind"] for r in list_changes(con, "toy2")] == ["sudden", "gradual"]


def test_a_scoped_change_gives_a_real_log_per_user_truth(tmp_path: Path) -> None:
    import numpy as np

    from devtools.fabricate import fabricate_dataset, fabricate_run
    from streamsim.changes import add_changes, list_changes
    from streamsim.store import clear_known_changes, connect_memory, known_user_changes
    from streamsim.user_shift import WINDOW, score_user_shift, user_shift_frame

    con = connect_memory()
    fabricate_dataset(con, n_events=1400, n_days=14, n_users=60)
    fabricate_run(con, "r", start_idx=700)
    assert score_user_shift(con, "r") is None  # no regimes, no known user changes
    at = int(con.execute("SELECT ts FROM events WHERE idx = 900").fetchone()[0])  # type: ignore[index]
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("user_id\nu1\nu2\n\nu3\n")
    add_changes(con, "synth", [iso(at)], scope=str(users_csv))
    (change,) = list_changes(con, "synth")
    assert change["scope"] == pytest.approx(3 / 60)
    assert known_user_changes(con, "synth") == [(1, at), (2, at), (3, at)]
    score = score_user_shift(con, "r")
    assert score is not None
    frame = user_shift_frame(con, "r")
    expected = sum(
        min(WINDOW, int(((frame["user_id"] == u) & (frame["ts"] >= at)).sum())) for u in (1, 2, 3)
    )
    assert score.n_shifted == expected > 0
    # a category scope: the users with an event of that category before the change
    later = int(con.execute("SELECT ts FROM events WHERE idx = 1100").fetchone()[0])  # type: ignore[index]
    add_changes(con, "synth", [iso(later)], scope="cat2")
    ev = con.execute("SELECT user_id, category, ts FROM events ORDER BY idx").fetchnumpy()
    cat2 = sorted(set(ev["user_id"][(ev["category"] == 2) & (ev["ts"] < later)].tolist()))
    assert [u for u, t in known_user_changes(con, "synth") if t == later] == cat2
    assert list_changes(con, "synth")[1]["scope"] == pytest.approx(len(cat2) / 60)
    # bad scopes: the file and line, or the category; nothing stored
    bad = tmp_path / "bad.csv"
    bad.write_text("user\nu1\nnobody\n")
    with pytest.raises(StorageError, match=r"bad.csv line 3: user 'nobody' is not in dataset"):
        add_changes(con, "synth", [iso(at)], scope=str(bad))
    with pytest.raises(StorageError, match=r"--scope 'catX': dataset 'synth' has no such category"):
        add_changes(con, "synth", [iso(at)], scope="catX")
    assert len(list_changes(con, "synth")) == 2
    assert clear_known_changes(con, "synth") == 2
    assert known_user_changes(con, "synth") == []
    assert np.isfinite(score.auroc)


def test_the_scope_option_on_the_command_line(tmp_path: Path) -> None:
    store, _ = toy_store_and_scenario(tmp_path, SCENARIO)
    con = Workspace.resolve(store).connect()
    info = dataset_info(con, "toy")
    con.close()
    users = tmp_path / "users.csv"
    users.write_text("u0\nu5\n")
    mid = iso((info.t_min + info.t_max) // 2)
    shown = invoke(store, "datasets", "changes", "toy", "--add", mid, "--scope", str(users))
    assert shown.exit_code == 0, shown.output
    assert "5.0%" in shown.output  # 2 of the 40 users
    missing = invoke(store, "datasets", "changes", "toy", "--add", mid, "--scope", "nope")
    assert missing.exit_code == 1
    assert "--scope 'nope': dataset 'toy' has no such category" in missing.output
