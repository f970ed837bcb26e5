"""river detectors by name, their seeding, and scoring alarms against ground-truth drifts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamsim.detection import periodic_alarms, random_alarms, score_alarms
from streamsim.drift import DetectorSpec, feed, make_detector
from streamsim.errors import ScenarioError


def _shifted_stream(n: int = 3000) -> list[float]:
    rng = np.random.default_rng(0)
    return np.r_[rng.normal(0, 1, n // 2), rng.normal(0.6, 1, n - n // 2)].tolist()


def test_every_detector_builds_and_watches_its_signal() -> None:
    for name in ("adwin", "page_hinkley", "kswin"):
        make_detector(DetectorSpec(name=name, signal="rr10"))
    for name in ("ddm", "eddm", "hddm_a", "hddm_w", "fhddm"):
        make_detector(DetectorSpec(name=name, signal="miss10"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DetectorSpec(name="adwn", signal="rr10"), "unknown detector 'adwn'"),
        (DetectorSpec(name="adwin", signal="hits"), "unknown detector signal 'hits'"),
        (DetectorSpec(name="ddm", signal="rr10"), "cannot watch 'rr10'"),
        (DetectorSpec(name="adwin", signal="miss10"), "cannot watch 'miss10'"),
        (DetectorSpec(name="adwin", signal="rr10", params=(("deltaa", 1),)), "bad parameters"),
    ],
)
def test_bad_detector_specs_are_named(spec: DetectorSpec, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        make_detector(spec)


def test_kswin_alarms_repeat_with_the_seed_and_change_without_it() -> None:
    stream = _shifted_stream()
    positions = list(range(len(stream)))
    spec = DetectorSpec(name="kswin", signal="rr10")
    runs = [feed(make_detector(spec, seed=s), stream, positions) for s in (1, 1, 2)]
    assert runs[0], "KSWIN must fire on a mean shift of 0.6 sd"
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # the seed is really used (KSWIN samples its reference window)


def test_adwin_fires_after_the_shift() -> None:
    stream = _shifted_stream()
    alarms = feed(make_detector(DetectorSpec(name="adwin", signal="rr10")), stream, range(3000))
    assert alarms
    assert min(alarms) >= 1500


def test_score_alarms_counts_delay_misses_false_alarms_and_mtfa() -> None:
    drifts = [(100, 110, 10_000), (500, 500, 50_000), (900, 950, 90_000)]
    alarm_idx = [20, 60, 130, 140, 700, 960]
    alarm_ts = [2_000, 6_000, 13_000 + 3600, 14_000, 70_000, 96_000 + 7200]
    s = score_alarms(alarm_idx, alarm_ts, drifts, n_events=2000, delta_max=40)
    assert (s.n_drifts, s.n_alarms, s.detected) == (3, 6, 2)
    assert s.missed_rate == pytest.approx(1 / 3)
    assert s.delay_events == pytest.approx(((130 - 100) + (960 - 900)) / 2)
    assert s.delay_hours == pytest.approx(((3_000 + 3600) / 3600 + (6_000 + 7200) / 3600) / 2)
    assert s.false_alarms == 3  # 20, 60, 700 (140 lies in the first window: a repeat hit)
    assert s.far_per_10k == pytest.approx(1e4 * 3 / 2000)
    assert s.mtfa_events == pytest.approx(((60 - 20) + (700 - 60)) / 2)
    assert s.precision == pytest.approx(3 / 6)  # 130, 140 and 960 lie in windows
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.mtr == pytest.approx(s.mtfa_events / s.delay_events * (2 / 3))
    none = score_alarms([], [], drifts, n_events=2000, delta_max=40)
    assert none.detected == 0
    assert none.missed_rate == 1.0
    assert math.isnan(none.delay_events)


def test_periodic_baseline_fires_as_often_as_the_detector() -> None:
    alarms = periodic_alarms(1000, 4, offset=5000)
    assert len(alarms) == 4
    assert all(5000 <= a < 6000 for a in alarms)
    gaps = np.diff(alarms)
    assert (gaps == gaps[0]).all()  # river's fixed trigger: one alarm every t_0 values
    assert periodic_alarms(1000, 0) == []


def test_random_baseline_is_seeded_irregular_and_capped() -> None:
    alarms = random_alarms(10_000, 6, offset=100)
    assert alarms == random_alarms(10_000, 6, offset=100)  # seeded: reports are reproducible
    assert 1 <= len(alarms) <= 6
    assert all(100 <= a < 10_100 for a in alarms)
    assert alarms == sorted(alarms)
    if len(alarms) > 2:
        gaps = np.diff(alarms)
        assert not (gaps == gaps[0]).all()  # random triggers, not a period
    assert random_alarms(10_000, 0) == []
    assert random_alarms(10_000, 6, seed=1) != alarms


def test_detector_report_scores_alarms_next_to_both_dummy_baselines() -> None:
    import json

    from devtools.fabricate import fabricate_dataset, fabricate_run
    from streamsim import store
    from streamsim.detection import detector_report

    con = store.connect_memory()
    fabricate_dataset(con, n_events=3000, drifts=[(1000, 1050), (2000, 2020)])
    fabricate_run(
        con, "r", policy="none", alarms=[("adwin", "rr10", 1010), ("adwin", "rr10", 2500)]
    )
    manifest = {"policy": {"name": "none"}, "detectors": [{"name": "adwin", "signal": "rr10"}]}
    con.execute("UPDATE runs SET manifest = ? WHERE run_id = 'r'", [json.dumps(manifest)])
    (report,) = detector_report(con, "r")
    row = report.to_json()
    assert (row["detector"], row["signal"], row["alarms"], row["n_drifts"]) == (
        "adwin",
        "rr10",
        2,
        2,
    )
    assert row["detected"] == 1  # 1010 lies in the first drift's window; 2500 is a false alarm
    sens = row["delta_max_sensitivity"]
    assert set(sens) == {"0.5x", "2x"}
    assert sens["0.5x"]["detected"] <= row["detected"] <= sens["2x"]["detected"]
    for prefix in ("periodic_", "random_"):
        assert 0 <= row[prefix + "detected"] <= 2
        assert row[prefix + "far_per_10k"] >= 0
