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
