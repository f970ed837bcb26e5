"""Detector thresholds calibrated on the validation window ("auto"), and held to their target
false-alarm rate on a stream the calibration never saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsim import scenario
from streamsim.calibration import BLOCK, auto_detector, calibrate, null_stream
from streamsim.drift import GRIDS, DetectorSpec, feed, make_detector
from streamsim.errors import ScenarioError
from streamsim.pipeline import run_scenario
from streamsim.runs import run_info
from streamsim.store import Workspace

TARGET = 5.0  # false alarms per 10k events
WATCHED = (("adwin", "rr10"), ("page_hinkley", "ndcg10"), ("ddm", "miss10"))
AUTO = [auto_detector(name, signal, TARGET) for name, signal in WATCHED]


def test_calibrate_takes_the_most_sensitive_value_within_the_target() -> None:
    rng = np.random.default_rng(0)
    quiet = (rng.random(4000) < 0.3).astype(float).tolist()  # a stationary hit@10-like signal
    spec = DetectorSpec(name="page_hinkley", signal="ndcg10", params=(("threshold", "auto"),))
    cal = calibrate(spec, quiet)
    assert (cal.window_values, cal.stream_values) == (4000, 40_000)
    assert cal.alarms <= int(TARGET / 2 * 40_000 / 10_000)
    grid = GRIDS["page_hinkley"]
    k = grid.index(cal.value)
    assert k > 0  # this stream is noisy enough that the most sensitive value is refused
    stream = null_stream(quiet, length=40_000, block=BLOCK, seed=0)
    params = (("threshold", grid[k - 1]),)  # the next more sensitive value: too many alarms
    watch = make_detector(DetectorSpec(name="page_hinkley", signal="ndcg10", params=params))
    assert len(feed(watch, stream, range(len(stream)))) > int(TARGET / 2 * 4)
    shifting = [0.0] * 50 + [float(i % 2) for i in range(4000)]  # flips every value
    with pytest.raises(ScenarioError, match="no threshold in"):
        calibrate(
            DetectorSpec(name="page_hinkley", signal="ndcg10", params=(("threshold", "auto"),),
                         target_far=0.01),
            [v * 1000 for v in shifting],
        )  # fmt: skip


def test_auto_is_only_for_the_sensitivity_parameter() -> None:
    table = {"name": "adwin", "signal": "rr10", "params": {"clock": "auto"}}
    with pytest.raises(ScenarioError, match='expected delta = "auto"'):
        DetectorSpec.from_table(table, "[[detectors]][0]")
    with pytest.raises(ScenarioError, match="is calibrated before a replay"):
        make_detector(DetectorSpec(name="adwin", signal="rr10", params=(("delta", "auto"),)))


def _no_drift(seed: int, detectors: list[dict[str, Any]]) -> scenario.Scenario:
    return scenario.load(
        "no-drift",
        {
            "seed": seed, "data.dataset": f"no-drift-{seed}", "data.synthetic.n_users": 600,
            "model.name": "popularity", "adaptation.policies": [{"name": "none"}],
            "detectors": detectors, "replay.probe_events": 0,
        },
    )  # fmt: skip


def test_auto_thresholds_hold_their_false_alarm_rate_on_a_held_out_seed(tmp_path: Path) -> None:
    """Calibrated on seed 0's validation window (no drift there, as in the whole stream), the
    thresholds keep seed 1's replay period — another generated stream — under the target."""
    ws = Workspace.resolve(tmp_path / "a")
    con = ws.connect()
    calibrated = run_scenario(con, ws, _no_drift(0, AUTO), dashboard=False)
    manifest = run_info(con, calibrated.run_ids[0])["manifest"]
    cals = {c["detector"]: c for c in manifest["detectors_calibrated"]}
    assert set(cals) == {"adwin:rr10", "page_hinkley:ndcg10", "ddm:miss10"}
    window = calibrated.prepared.split.valid
    assert all(c["window_values"] == len(window) for c in cals.values())
    fixed = [
        {**d, "params": {k: cals[f"{d['name']}:{d['signal']}"]["value"] for k in d["params"]}}
        for d in AUTO
    ]
    assert [dict(d["params"]) for d in manifest["detectors"]] == [f["params"] for f in fixed]
    ws1 = Workspace.resolve(tmp_path / "b")
    held_out = run_scenario(ws1.connect(), ws1, _no_drift(1, fixed), dashboard=False)
    (summary,) = held_out.summaries
    for report in summary.detectors:
        assert report.alarms / summary.n_events * 10_000 <= TARGET, report


def test_a_replay_with_auto_detectors_is_found_again_on_resume(tmp_path: Path) -> None:
    """The run key is that of the scenario as written ("auto"), not of the calibrated values:
    `--resume` finds the run and replays nothing."""
    from streamsim.pipeline import run_key

    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    scenario = _no_drift(0, AUTO)
    first = run_scenario(con, ws, scenario, dashboard=False)
    again = run_scenario(con, ws, scenario, dashboard=False, resume=True)
    assert again.run_ids == first.run_ids
    stored = run_info(con, first.run_ids[0])["scenario_hash"]
    assert stored == run_key(scenario, scenario.policies[0])
