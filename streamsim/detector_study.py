"""A detector study: every detector of a scenario, over K generated streams, scored against the
ground truth and against dummy detectors that fire as often.

For each scenario and seed (the seed draws the synthetic stream) the scenario is replayed with
its frozen model (`none`; a count model by default, so no pretraining is needed and the signals
are those of a recommender that does not adapt), and every ``[[detectors]]`` entry is scored per
change point (`streamsim.detection`: only the first alarm inside a change's acceptance window
counts, later ones are repeats; detection rate, false alarms per 10k events, delay in events
and hours, F1 and CD-MOA's mean time ratio) next to river's `DummyDriftDetector` firing
periodically and at random with the same number of alarms. Over the seeds, each mean gets a
95% t-interval, and the detector's per-seed F1 is compared with each baseline's by a Wilcoxon
signed-rank test, Holm-corrected across the scenario's detectors. A detector "beats" a baseline
only when its Holm p-value is below 0.05 and its mean F1 is higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from streamsim.detection import DetectorReport
from streamsim.pipeline import run_scenario
from streamsim.scenario import load
from streamsim.stats import holm_adjust, wilcoxon
from streamsim.store import Workspace

METRICS = ("missed_rate", "far_per_10k", "delay_events", "delay_hours", "f1", "mtr")


@dataclass(frozen=True)
class SeedScore:
    """One detector on one seed's stream: its score and its two baselines'."""

    scenario: str
    seed: int
    detector: str  # name(signal)
    n_drifts: int
    n_events: int
    alarms: int
    score: dict[str, float]
    periodic: dict[str, float]
    random: dict[str, float]


@dataclass(frozen=True)
class StudyRow:
    """One detector on one scenario, over the seeds."""

    scenario: str
    detector: str
    seeds: int
    alarms: float  # mean per seed
    means: dict[str, tuple[float, float, float]]  # metric -> (mean, 95% CI low, high)
    f1_periodic: float  # mean F1 of the periodic baseline
    f1_random: float
    p_periodic: float  # Holm-corrected Wilcoxon p, detector F1 vs periodic F1, per seed
    p_random: float

    @property
    def verdict(self) -> str:
        f1 = self.means["f1"][0]
        beats = [
            name
            for name, p, base in (
                ("periodic", self.p_periodic, self.f1_periodic),
                ("random", self.p_random, self.f1_random),
            )  # fmt: skip
            if p < 0.05 and f1 > base
        ]
        return f"beats {' and '.join(beats)}" if beats else "not better than the dummies"


def run_seed(
    root: Path, scenario: str, seed: int, *, model: str, overrides: dict[str, Any]
) -> list[SeedScore]:
    """Replay one seed's stream (its own workspace under `root`) and score its detectors."""
    sc = load(
        scenario,
        {
            "seed": seed, "data.dataset": f"{scenario}-seed{seed}", "model.name": model,
            "adaptation.policies": [{"name": "none"}], "replay.probe_events": 0, **overrides,
        },
    )  # fmt: skip
    ws = Workspace.resolve(root / f"{sc.name}-seed{seed}")
    con = ws.connect()
    try:
        result = run_scenario(con, ws, sc, resume=True, dashboard=False)
    finally:
        con.close()
    (summary,) = result.summaries
    return [_seed_score(sc.name, seed, d, summary.n_events) for d in summary.detectors]


def _seed_score(scenario: str, seed: int, d: DetectorReport, n_events: int) -> SeedScore:
    far = d.alarms / max(n_events, 1) * 10_000  # every alarm is false on a stream without drift

    def pick(score: Any) -> dict[str, float]:
        if score is None:
            return {m: far if m == "far_per_10k" else math.nan for m in METRICS}
        out = {m: float(getattr(score, m)) for m in METRICS}
        if math.isnan(out["f1"]):  # no alarm, or none in a window: nothing detected
            out["f1"] = 0.0
        return out

    n = d.score.n_drifts if d.score is not None else 0
    return SeedScore(
        scenario, seed, f"{d.detector}({d.signal})", n, n_events, d.alarms, pick(d.score),
        pick(d.periodic), pick(d.random),
    )  # fmt: skip


def summarize(scores: Sequence[SeedScore]) -> list[StudyRow]:
    """Per scenario and detector: means with t-intervals over seeds and the Holm-corrected
    Wilcoxon tests of F1 against the baselines (across the scenario's detectors)."""
    rows: list[StudyRow] = []
    for scenario in dict.fromkeys(s.scenario for s in scores):
        mine = [s for s in scores if s.scenario == scenario]
        detectors = list(dict.fromkeys(s.detector for s in mine))
        p_per: list[float] = []
        p_rnd: list[float] = []
        for det in detectors:
            got = [s for s in mine if s.detector == det]
            f1 = np.nan_to_num([s.score["f1"] for s in got])
            p_per.append(wilcoxon(f1 - np.nan_to_num([s.periodic["f1"] for s in got]))[1])
            p_rnd.append(wilcoxon(f1 - np.nan_to_num([s.random["f1"] for s in got]))[1])
        for det, pp, pr in zip(detectors, holm_adjust(p_per), holm_adjust(p_rnd), strict=True):
            got = [s for s in mine if s.detector == det]
            rows.append(
                StudyRow(
                    scenario,
                    det,
                    len(got),
                    float(np.mean([s.alarms for s in got])),
                    {m: _mean_ci([s.score[m] for s in got]) for m in METRICS},
                    float(np.mean(np.nan_to_num([s.periodic["f1"] for s in got]))),
                    float(np.mean(np.nan_to_num([s.random["f1"] for s in got]))),
                    pp,
                    pr,
                )  # fmt: skip
            )
    return rows


def _mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean of the finite values and its 95% t-interval (NaN with fewer than two)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean()) - half, float(v.mean()) + half
