"""The plain-language reading of a replay: continual against reset, a step against its placebo,
and a conclusion that does not call a method a help when a random step of its size did as well."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest

from devtools.fabricate import copy_run, fabricate_dataset, fabricate_run
from streamsim import store
from streamsim.compare import compare
from streamsim.report import contrasts, reading, summarize

ENTROPY = {"tta_step": "entropy", "tta_steps": 1, "tta_lr": 0.05, "entropy_k": 10}


def set_policy(con: duckdb.DuckDBPyConnection, run_id: str, policy: dict[str, Any]) -> None:
    manifest = {"policy": {"name": run_id, **policy}}
    con.execute("UPDATE runs SET manifest = ? WHERE run_id = ?", [json.dumps(manifest), run_id])


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    """28 days of fabricated events and a frozen run `none` over them."""
    return with_frozen_run(store.connect_memory())


def with_frozen_run(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    fabricate_dataset(con, n_events=2800, n_days=28)
    fabricate_run(con, "none", policy="none", seed=1)
    return con


def read(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> list[str]:
    summaries = [summarize(con, r) for r in run_ids]
    return reading(summaries, compare(con, run_ids), contrasts(con, summaries))


def test_a_method_no_better_than_its_placebo_is_not_called_a_help(
    con: duckdb.DuckDBPyConnection,
) -> None:
    copy_run(con, "none", "reset-entropy", policy="reset-entropy", ndcg_shift=0.05)
    copy_run(con, "none", "reset-placebo", policy="reset-placebo", ndcg_shift=0.05)
    set_policy(con, "reset-entropy", {"tta": "reset", **ENTROPY})
    set_policy(con, "reset-placebo", {"tta": "reset", **ENTROPY, "tta_step": "placebo",
                                      "placebo_of": "entropy"})  # fmt: skip
    lines = read(con, ["none", "reset-entropy", "reset-placebo"])
    (against,) = [x for x in lines if "vs reset-placebo (its step vs a random one" in x]
    assert against.startswith("toy/reset-entropy vs reset-placebo")
    assert "no detectable difference" in against
    assert lines[-1] == (
        "No label-free test-time adaptation helped here beyond moving the weights:"
        " reset-entropy beat none but not a random step of its size."
    )


def test_a_method_above_its_placebo_helps_and_continual_is_read_against_reset(
    con: duckdb.DuckDBPyConnection,
) -> None:
    copy_run(con, "none", "reset-entropy", policy="reset-entropy", ndcg_shift=0.05)
    copy_run(con, "none", "reset-placebo", policy="reset-placebo", ndcg_shift=0.0)
    copy_run(con, "none", "continual-entropy", policy="continual-entropy", ndcg_shift=-0.05)
    set_policy(con, "reset-entropy", {"tta": "reset", **ENTROPY})
    set_policy(con, "reset-placebo", {"tta": "reset", **ENTROPY, "tta_step": "placebo",
                                      "placebo_of": "entropy"})  # fmt: skip
    set_policy(con, "continual-entropy", {"tta": "continual", **ENTROPY})
    lines = read(con, ["none", "reset-entropy", "reset-placebo", "continual-entropy"])
    (carried,) = [x for x in lines if "(the same step, carried forward" in x]
    assert carried.startswith("toy/continual-entropy vs reset-entropy")
    assert "-0.1000 NDCG@10" in carried
    assert "continual-entropy is worse than reset-entropy" in carried
    (against,) = [x for x in lines if "vs reset-placebo (" in x]
    assert "reset-entropy is better than reset-placebo" in against
    assert lines[-1].startswith(
        "Label-free test-time adaptation helped here: reset-entropy (+0.0500)"
    )
