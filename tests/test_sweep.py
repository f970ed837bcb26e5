"""Sweeps: a grid run on worker processes (or Ray) stores what sequential replays store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streamsim import sweep as sweep_mod
from streamsim.cli import app
from streamsim.commands.sweep import parse_grid, parse_seeds
from streamsim.errors import StreamsimError
from streamsim.pipeline import run_scenario
from streamsim.scenario import load
from streamsim.store import Workspace
from streamsim.sweep import SweepSpec, expand, run_sweep, write_dashboards
from tests.test_golden_replay import ranks_digest

ROOT = Path(__file__).resolve().parents[1]
# weekend-shift shrunk to seconds per cell: a tiny T2ARec, one epoch, 600 replayed events
TINY = {
    "data.synthetic.n_users": 120,
    "data.synthetic.events_per_user": 20,
    "model.config.d_model": 16,
    "model.config.max_len": 10,
    "train.epochs": 1,
    "train.batch_size": 128,
    "replay.max_events": 600,
    "replay.probe_events": 50,
    "policies": ["none", "reset-entropy"],
}
GRID = (("replay.batch_events", (64, 128)),)
SEEDS = (0, 1)


def tiny_spec(**kw: Any) -> SweepSpec:
    return SweepSpec(
        scenario="weekend-shift", seeds=SEEDS, grid=GRID, fixed=tuple(TINY.items()), threads=1,
        **kw,
    )  # fmt: skip


def stored(ws: Workspace) -> dict[tuple[str, int, str], str]:
    """(run key, seed, policy) -> digest of the per-event ranks, for every complete run."""
    con = ws.connect(read_only=True)
    rows = con.execute(
        "SELECT run_id, scenario_hash, seed, policy FROM runs WHERE status = 'complete'"
    ).fetchall()
    out = {(key, seed, policy): ranks_digest(con, run_id) for run_id, key, seed, policy in rows}
    assert len(out) == len(rows), "one run per key"
    con.close()
    return out


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, str], str]:
    """The four cells as four `streamsim replay` calls would run them, one after the other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep's cells (--threads 1)
    try:
        ws = Workspace.resolve(tmp_path_factory.mktemp("sequential"))
        con = ws.connect()
        for cell in expand(tiny_spec(), synthetic_dataset="synth-weekend-shift"):
            run_scenario(con, ws, load("weekend-shift", cell.overrides), dashboard=False)
        con.close()
    finally:
        torch.set_num_threads(threads)
    return stored(ws)


def test_grid_expansion_and_parsing() -> None:
    cells = expand(tiny_spec(), synthetic_dataset="synth-weekend-shift")
    assert [c.label for c in cells] == [
        "seed=0 replay.batch_events=64", "seed=0 replay.batch_events=128",
        "seed=1 replay.batch_events=64", "seed=1 replay.batch_events=128",
    ]  # fmt: skip
    assert cells[2].overrides["data.dataset"] == "synth-weekend-shift-seed1"  # a stream per seed
    assert cells[0].overrides["train.epochs"] == 1
    assert parse_seeds("0-2,5") == (0, 1, 2, 5)
    assert parse_grid(["train.lr=0.001,3e-3", "model.name=sasrec"]) == (
        ("train.lr", (0.001, 0.003)), ("model.name", ("sasrec",)),
    )  # fmt: skip
    with pytest.raises(StreamsimError, match="--seeds '3-1': expected a range"):
        parse_seeds("3-1")
    with pytest.raises(StreamsimError, match="--set 'train.lr': expected KEY=V1,V2"):
        parse_grid(["train.lr"])


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_two_by_two_sweep_stores_what_four_replays_store(
    executor: str, tmp_path: Path, sequential: dict[tuple[str, int, str], str]
) -> None:
    if executor == "ray":
        pytest.importorskip("ray", reason="the optional [ray] extra is not installed")
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    result = run_sweep(con, ws, tiny_spec(executor=executor, workers=2))
    assert [c.status for c in result.cells] == ["complete"] * 4
    con.close()
    assert stored(ws) == sequential  # same run keys, seeds, policies and every rank
    assert len(list((ws.root / "checkpoints").iterdir())) == 2  # one pretraining per seed
    for k in range(4):  # stored cells keep their result, not their scratch copies
        cell = result.directory / f"cell-{k}"
        assert (cell / "result.json").exists()
        assert not (cell / "workspace").exists()
        assert not (cell / "runs").exists()
    if executor == "local":  # one dashboard per seed's stream, runs labelled by their cell
        con = ws.connect()
        pages = write_dashboards(con, result)
        con.close()
        assert len(pages) == 2
        page = pages[0].read_text()
        assert "none [seed=0 replay.batch_events=64]" in page
        assert "reset-entropy [seed=0 replay.batch_events=128]" in page
    if executor == "ray":
        import ray

        assert not ray.is_initialized()  # the Ray instance the sweep started is shut down


def test_a_failed_cell_is_recorded_and_the_grid_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sweep_mod._cell_process

    def flaky(cell_dir: Path) -> sweep_mod.Outcome:
        if cell_dir.name == "cell-1":
            return RuntimeError("killed by signal 9: out of memory")
        return real(cell_dir)

    monkeypatch.setattr(sweep_mod, "_cell_process", flaky)
    spec = SweepSpec(
        scenario="weekend-shift", seeds=(0,), grid=GRID, fixed=tuple(TINY.items()), threads=1
    )
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    result = run_sweep(con, ws, spec)
    assert [c.status for c in result.cells] == ["complete", "failed"]
    assert "out of memory" in str(result.cells[1].error)
    recorded = json.loads((result.directory / "cell-1" / "result.json").read_text())
    assert recorded["status"] == "failed"
    assert con.execute("SELECT count(*) FROM runs").fetchall() == [(2,)]  # cell 0's two runs
    monkeypatch.setattr(sweep_mod, "_cell_process", real)  # the rerun retries the failed cell
    again = run_sweep(con, ws, spec)
    assert [c.status for c in again.cells] == ["skipped", "complete"]


def test_a_killed_sweep_resumes_without_redoing_finished_cells(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    argv = [sys.executable, "-m", "streamsim", "--store", str(store), "sweep"]
    argv += ["--scenario", "weekend-shift", "--seeds", "0-1", "--workers", "1", "--threads", "1"]
    argv += ["-p", "none", "-p", "reset-entropy"]
    for key, value in TINY.items():
        if key != "policies":
            argv += ["--set", f"{key}={value}"]
    proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 300
    first = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((store / "sweeps").glob("*/cell-0/result.json")) if store.exists() else []
        if found:
            first = found[0]
            break
        time.sleep(0.2)
    assert first is not None, "cell 0 never finished"
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running cell
    proc.wait()
    stamp = first.stat().st_mtime_ns
    runner = CliRunner()
    res = runner.invoke(app, argv[3:])  # the same command again
    assert res.exit_code == 0, res.output
    assert "cell 0 (seed=0): finished earlier" in res.output
    assert "cell 1 (seed=1): 2 runs" in res.output
    assert first.stat().st_mtime_ns == stamp  # cell 0 was not run again
    con = Workspace.resolve(store).connect(read_only=True)
    counts = con.execute("SELECT count(*), count(DISTINCT scenario_hash || seed) FROM runs")
    assert counts.fetchall() == [(4, 4)]  # two cells x two policies, none twice
