"""Test-time learning rates chosen on the validation window: the sweep, `tta_lr = "auto"`, the
`tune` command, and that the replay period is never read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from streamsim.adapt import PolicySpec
from streamsim.cli import app
from streamsim.pipeline import prepare, replay_policy
from streamsim.report import summarize
from streamsim.runs import run_info
from streamsim.store import read_events, write_dataset
from streamsim.tuning import resolve_auto, sweep
from tests.support.tiny_scenario import setup, tiny_scenario

LRS = (0.01, 1.0)


def test_the_sweep_reads_only_the_validation_window(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    clean = sweep(con, ws, sc, prepared.source, rule="entropy", lrs=LRS, steps=(1,))  # type: ignore[arg-type]
    assert [c.lr for c in clean.cells] == list(LRS)
    assert clean.n_events == len(prepared.split.valid)
    # the same data with the replay period scrambled: the same sweep, to the last digit
    events = read_events(con, "toy")
    stop = prepared.split.valid.stop
    items = events.column("item_id").to_numpy().copy()
    items[stop:] = np.random.default_rng(5).integers(1, 31, len(items) - stop)
    dirty = events.set_column(2, "item_id", pa.array(items))
    ws2, con2 = setup(tmp_path / "ws2")
    users = con.sql("SELECT user_id, raw FROM users WHERE dataset = 'toy'").to_arrow_table()
    catalogue = con.sql(
        "SELECT item_id, raw, category, title, genres FROM items WHERE dataset = 'toy'"
    ).to_arrow_table()
    write_dataset(
        con2, "toy", events=dirty, users=users, items=catalogue, source="t", format="t",
        replace=True,
    )  # fmt: skip
    prepared2 = prepare(con2, ws2, sc)  # type: ignore[arg-type]
    assert prepared2.split.valid == prepared.split.valid
    poisoned = sweep(con2, ws2, sc, prepared2.source, rule="entropy", lrs=LRS, steps=(1,))  # type: ignore[arg-type]
    assert poisoned.frozen_ndcg10 == clean.frozen_ndcg10
    assert [c.ndcg10 for c in poisoned.cells] == [c.ndcg10 for c in clean.cells]


def test_auto_takes_the_best_rate_of_the_sweep_and_records_it(tmp_path: Path) -> None:
    ws, con = setup(tmp_path / "ws")
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    auto = PolicySpec(name="reset-entropy-auto", tta="reset", tta_lr="auto", tta_step="entropy")
    run_id = replay_policy(con, ws, sc, auto, prepared)  # type: ignore[arg-type]
    manifest = run_info(con, run_id)["manifest"]
    stored = sweep(con, ws, sc, prepared.source, rule="entropy", steps=(1,))  # type: ignore[arg-type]
    best = stored.best(1)
    assert manifest["policy"]["tta_lr"] == best.lr
    assert manifest["tta_lr_auto"]["lr"] == best.lr
    assert max(c.ndcg10 for c in stored.cells) == best.ndcg10
    assert len(list((ws.root / "tuning").glob("*.json"))) == 1  # stored, and reused
    summary = summarize(con, run_id)  # the reading names the rate and where it came from
    assert (summary.tta_step, summary.tta_lr, summary.tta_lr_chosen) == ("entropy", best.lr, True)
    # a placebo sized like the entropy step gets the entropy step's rate (its sweep, reused)
    placebo = PolicySpec(
        name="p", tta="reset", tta_lr="auto", tta_step="placebo", placebo_of="entropy"
    )
    resolved, cell = resolve_auto(con, ws, sc, prepared.source, placebo)  # type: ignore[arg-type]
    assert (resolved.tta_lr, cell) == (best.lr, best)
    assert len(list((ws.root / "tuning").glob("*.json"))) == 1


def test_tune_command_prints_the_sweep(tmp_path: Path) -> None:
    from tests.support.tiny_scenario import toy_store_and_scenario
    from tests.test_cli_replay import SCENARIO

    store, path = toy_store_and_scenario(tmp_path, SCENARIO)
    result = CliRunner().invoke(
        app, ["--store", str(store), "tune", "-s", str(path), "-r", "entropy", "-r", "model",
              "--steps", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sweeps = json.loads(result.stdout)
    assert [s["rule"] for s in sweeps] == ["entropy", "model"]
    assert len(sweeps[0]["cells"]) == 5  # 0.005 × {1, 10, 100, 1000, 10000}
    text = CliRunner().invoke(
        app, ["--store", str(store), "tune", "-s", str(path), "-r", "entropy", "-r", "model",
              "--steps", "1"],
    )  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "best label-free rule on validation" in text.stdout
    assert "chosen" in text.stdout


def test_auto_is_refused_where_it_cannot_be_resolved() -> None:
    from streamsim.adapt import Adapter
    from tests.support.toy import make_toy_model

    with pytest.raises(ValueError, match="must be resolved on the validation window"):
        Adapter(make_toy_model(5), replace(PolicySpec(name="a", tta="reset"), tta_lr="auto"))
