"""`streamsim detectors`: every detector over K generated streams, against the dummies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from streamsim.cli import app
from streamsim.detector_study import SeedScore, summarize


def test_the_study_runs_every_seed_and_scores_each_detector(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--store", str(tmp_path / "ws"), "detectors", "-s", "sudden-shift", "-s", "no-drift",
         "--seeds", "0-1", "--model", "transition", "--set", "data.synthetic.n_users=300",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["scenario"], r["detector"]) for r in rows} == {
        (s, d) for s in ("sudden-shift", "no-drift")
        for d in ("adwin(rr10)", "page_hinkley(ndcg10)", "ddm(miss10)")
    }  # fmt: skip
    for r in rows:
        assert r["seeds"] == 2
        assert r["means"]["far_per_10k"][0] >= 0
        if r["scenario"] == "sudden-shift":
            assert 0.0 <= r["means"]["f1"][0] <= 1.0
            assert 0.0 <= r["means"]["missed_rate"][0] <= 1.0
        else:  # no drift: nothing to detect, every alarm a false one
            assert math.isnan(r["means"]["f1"][0])
        assert r["verdict"] in ("not better than the dummies", "beats periodic", "beats random",
                                "beats periodic and random")  # fmt: skip
    streams = sorted((tmp_path / "ws" / "detector-study").iterdir())
    assert [p.name for p in streams] == [
        "no-drift-seed0", "no-drift-seed1", "sudden-shift-seed0", "sudden-shift-seed1",
    ]  # fmt: skip
    bad = CliRunner().invoke(app, ["--store", str(tmp_path / "ws"), "detectors", "-s", "x",
                                   "--seeds", "3-1"])  # fmt: skip
    assert bad.exit_code == 1
    assert "expected N or N-M with N <= M" in bad.output


def test_a_detector_that_always_detects_beats_dummies_that_never_do() -> None:
    def score(f1: float) -> dict[str, float]:
        return {"missed_rate": 1 - f1, "far_per_10k": 0.0, "delay_events": 10.0,
                "delay_hours": 1.0, "f1": f1, "mtr": 1.0}  # fmt: skip

    scores = [
        SeedScore("s", seed, "good(x)", 4, 10_000, 4, score(0.9 + 0.01 * seed), score(0.1),
                  score(0.2))
        for seed in range(10)
    ] + [
        SeedScore("s", seed, "idle(x)", 4, 10_000, 0, score(0.0), score(0.0), score(0.0))
        for seed in range(10)
    ]  # fmt: skip
    good, idle = summarize(scores)
    assert good.verdict == "beats periodic and random"
    assert good.p_periodic < 0.05
    assert good.means["f1"][1] < good.means["f1"][0] < good.means["f1"][2]
    assert np.isclose(good.f1_periodic, 0.1)
    assert idle.verdict == "not better than the dummies"
