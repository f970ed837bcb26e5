"""Untrusted scenarios, workspaces and flags: no file outside the workspace, no code run from a
state file, one `error:` line per user error, resume that finds its runs whatever the filter."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from streamsim import runs, scenario
from streamsim.cli import app
from streamsim.errors import ScenarioError, StorageError
from tests.support.tiny_scenario import toy_store_and_scenario
from tests.test_cli_replay import SCENARIO


def invoke(store: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(store), *args])


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    """The CLI failed the way a user error must: exit 1, one `error:` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", ".hidden", "x\\y", "a b"])
def test_scenario_and_policy_names_that_would_be_paths_are_refused(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'name = {json.dumps(name)}\n[data]\ndataset = "d"\n')
    with pytest.raises(ScenarioError, match="key 'name': expected a name of letters"):
        scenario.load(path)
    path.write_text(
        f'[data]\ndataset = "d"\n[[adaptation.policies]]\nname = {json.dumps(name)}\n'
    )
    with pytest.raises(ScenarioError, match=r"policies\]\]\[0\] key 'name'"):
        scenario.load(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'[data]\ndataset = "d"\n[train]\nlr = {value}\n')
    with pytest.raises(ScenarioError, match=r"\[train\] key 'lr': expected a finite number"):
        scenario.load(path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("policies=3", "override 'policies': expected a list of policy names; got 3"),
        ('policies=[1, "x"]', "expected a list of policy names"),
        ("train.lr=nan", r"\[train\] key 'lr': expected a number; got 'nan'"),
        ("train..lr=1", "expected a dotted key"),
        ("train=3", r"\[train\]: expected a table; got 3"),
        ("replay.batch_events=0", r"\[replay\] key 'batch_events': expected a value > 0"),
    ],
)
def test_bad_overrides_are_one_line(tmp_path: Path, override: str, match: str) -> None:
    line = one_error_line(
        invoke(tmp_path / "ws", "replay", "-s", "weekend-shift", "--set", override)
    )
    assert re.search(match, line), line
    assert not (tmp_path / "ws" / "streamsim.duckdb").exists()  # refused before any write


class _RunsCode:
    """A pickle payload that would create a file when unpickled without `weights_only`."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.sentinel),))


def test_a_crafted_state_file_is_refused_without_running_code(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "state.pt"
    with path.open("wb") as fh:
        pickle.dump({"next_batch_id": 3, "x": _RunsCode(sentinel)}, fh)
    with pytest.raises(StorageError, match="not a resume state this streamsim can load safely"):
        runs.load_state(path)
    assert not sentinel.exists()
    torch.save({"next_batch_id": 3, "x": _RunsCode(sentinel)}, path)
    with pytest.raises(StorageError, match="state.pt"):
        runs.load_state(path)
    assert not sentinel.exists()


def test_the_engine_state_loads_with_weights_only(tmp_path: Path) -> None:
    """A real state round-trips through the safe loader and resumes (see the resume tests)."""
    from streamsim.pipeline import build_engine, prepare
    from tests.support.tiny_scenario import setup, tiny_scenario

    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    engine = build_engine(con, sc, sc.policies[3], prepared)  # type: ignore[arg-type]
    runs.save_state(tmp_path / "s.pt", engine.state())
    state = runs.load_state(tmp_path / "s.pt")
    assert state["next_batch_id"] == 0


def test_flags_out_of_range_and_a_missing_device(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    for args in (
        ["evaluate", "--dataset", "x", "--model", "sasrec", "--seeds", "0"],
        ["evaluate", "--dataset", "x", "--model", "sasrec", "--batch-size", "0"],
        ["replay", "--scenario", "weekend-shift", "--max-events", "0"],
    ):
        result = invoke(store, *args)
        assert result.exit_code == 2, args  # typer's usage error: one message, no traceback
        assert "Traceback" not in result.output
    if not torch.cuda.is_available():
        line = one_error_line(
            invoke(store, "evaluate", "--dataset", "x", "--model", "sasrec", "--device", "cuda")
        )
        assert "no CUDA device" in line
    line = one_error_line(
        invoke(store, "evaluate", "--dataset", "x", "--model", "sasrec", "--device", "tpu")
    )
    assert "expected 'cpu' or 'cuda'" in line


def test_a_store_that_is_a_file_or_a_corrupt_database(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    assert "not a directory; expected a workspace directory" in one_error_line(
        invoke(a_file, "runs", "list")
    )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "streamsim.duckdb").write_bytes(b"this is not a database" * 100)
    line = one_error_line(invoke(corrupt, "runs", "list"))
    assert "cannot open the store" in line
    assert (corrupt / "streamsim.duckdb").read_bytes() == b"this is not a database" * 100


def test_an_output_path_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    store, sc = toy_store_and_scenario(tmp_path, SCENARIO)
    done = invoke(store, "replay", "-s", str(sc), "-p", "none", "--no-dashboard", "--json")
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.stdout[done.stdout.index("{") :])["runs"][0]["run_id"]
    folder = tmp_path / "adir.parquet"
    folder.mkdir()
    line = one_error_line(invoke(store, "runs", "export", run_id, str(folder)))
    assert "adir.parquet" in line
    line = one_error_line(invoke(store, "dashboard", run_id, "-o", str(folder)))
    assert "adir.parquet" in line


def test_resume_finds_runs_whatever_the_policy_filter(tmp_path: Path) -> None:
    """`--resume -p reset` after a full replay keeps the finished run (same run key), and a
    full `--resume` after `-p none` replays only the missing policy."""
    store, sc = toy_store_and_scenario(tmp_path, SCENARIO)

    def replay(*extra: str) -> dict[str, str]:
        out = invoke(store, "replay", "-s", str(sc), "--no-dashboard", "--json", *extra)
        assert out.exit_code == 0, out.output
        payload = json.loads(out.stdout[out.stdout.index("{") :])
        return {r["policy"]: r["run_id"] for r in payload["runs"]}

    first = replay("-p", "none")
    both = replay("--resume")
    assert both["none"] == first["none"]  # kept, not replayed again
    again = replay("--resume", "-p", "reset")
    assert again["reset"] == both["reset"]
    listed = json.loads(invoke(store, "runs", "list", "--json").stdout)
    assert len(listed) == 2
    assert {r["status"] for r in listed} == {"complete"}
    # finished runs leave no resume state behind
    assert not list((store / "runs").rglob("state.pt"))
    fresh = replay("-p", "none")  # without --resume: a new run
    assert fresh["none"] != first["none"]


def test_a_killed_run_is_listed_as_interrupted(tmp_path: Path) -> None:
    from streamsim.store import Workspace

    store, _ = toy_store_and_scenario(tmp_path, SCENARIO)
    con = Workspace.resolve(store).connect()
    runs.create_run(
        con, run_id="k-1", dataset="toy", scenario="s", scenario_hash="h", data_fingerprint="f",
        model="m", checkpoint_hash="c", policy="p", seed=0, manifest={},
    )  # fmt: skip
    con.close()
    listed = json.loads(invoke(store, "runs", "list", "--json").stdout)
    assert [r["status"] for r in listed] == ["interrupted"]
