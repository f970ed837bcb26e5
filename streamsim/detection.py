"""Scoring drift-detector alarms against known change points, next to dummy baselines.

Scoring follows river's proposed ``drift.evaluate`` semantics, written here because river 0.26
does not ship it: an alarm inside a drift's acceptance window ``[start, end + delta_max]``
detects it (the first such alarm gives the delay); every other alarm is a false alarm.

A run's report (`detector_report`) scores each detector's alarms against the dataset's global
drifts that start inside the replayed period, next to river's `DummyDriftDetector` firing
periodically with the same number of alarms (Bifet 2017: a detector only "works" if it beats
that periodic trigger) and, seeded, with random triggers at about the same rate (`random_*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
from river import drift

from streamsim.runs import run_info


@dataclass(frozen=True)
class DetectionScore:
    n_drifts: int
    n_alarms: int
    detected: int  # drifts with >= 1 alarm in their window
    missed_rate: float  # MDR = 1 - episode recall
    delay_events: float  # mean (first alarm - start) over detected drifts, in events
    delay_hours: float
    false_alarms: int
    far_per_10k: float  # false alarms per 10 000 events
    mtfa_events: float  # mean time between false alarms (NaN with < 2)
    precision: float  # alarms inside a drift window / all alarms (NaN without alarms)
    f1: float  # harmonic mean of precision and episode recall (1 − MDR)
    mtr: float  # MTFA / delay x (1 − MDR), CD-MOA's mean time ratio (higher is better)


def score_alarms(
    alarm_idx: Sequence[int],
    alarm_ts: Sequence[int],
    drifts: Sequence[tuple[int, int, int]],
    *,
    n_events: int,
    delta_max: int,
) -> DetectionScore:
    """Score alarms (replay indices and timestamps) against drifts ``(start_idx, end_idx,
    start_ts)`` with acceptance windows ``[start_idx, end_idx + delta_max]``.

    >>> s = score_alarms([5, 120, 300], [50, 1200, 3000], [(100, 110, 1000)], n_events=1000,
    ...                  delta_max=50)
    >>> s.detected, s.delay_events, s.false_alarms
    (1, 20.0, 2)
    """
    alarms = np.asarray(alarm_idx, dtype=np.int64)
    times = np.asarray(alarm_ts, dtype=np.int64)
    in_window = np.zeros(len(alarms), dtype=bool)
    delays, delays_h, detected = [], [], 0
    for start, end, start_ts in drifts:
        hits = np.flatnonzero((alarms >= start) & (alarms <= end + delta_max) & ~in_window)
        if hits.size:
            detected += 1
            first = hits[0]
            delays.append(float(alarms[first] - start))
            delays_h.append(float(times[first] - start_ts) / 3600.0)
            in_window[hits] = True
    false = np.sort(alarms[~in_window])
    mtfa = float(np.diff(false).mean()) if false.size >= 2 else float("nan")
    n = len(drifts)
    nan = float("nan")
    recall = detected / n if n else nan
    precision = float(in_window.sum()) / alarms.size if alarms.size else nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if alarms.size and n and precision + recall > 0
        else nan
    )
    delay = float(np.mean(delays)) if delays else nan
    mtr = mtfa / delay * recall if delays and delay > 0 and mtfa == mtfa else nan
    return DetectionScore(
        n_drifts=n,
        n_alarms=int(alarms.size),
        detected=detected,
        missed_rate=(1.0 - recall) if n else nan,
        delay_events=delay,
        delay_hours=float(np.mean(delays_h)) if delays_h else nan,
        false_alarms=int(false.size),
        far_per_10k=1e4 * false.size / max(n_events, 1),
        mtfa_events=mtfa,
        precision=precision,
        f1=f1,
        mtr=mtr,
    )


def random_alarms(n_events: int, n_alarms: int, *, offset: int = 0, seed: int = 0) -> list[int]:
    """Alarm positions of river's `DummyDriftDetector` with random triggers, at most `n_alarms`.

    Its reference point t_0 is the periodic baseline's period and its spread w = t_0, so the
    triggers come on average about as often as the detector it is matched with fired, at random
    positions (a random-trigger dummy next to the fixed one, as detector studies report both).
    Seeded, so a run's report is reproducible.
    """
    if n_alarms <= 0:
        return []
    t0 = max(n_events // (n_alarms + 1), 1)
    dummy = drift.DummyDriftDetector(trigger_method="random", t_0=t0, w=t0, seed=seed)
    return _dummy_alarms(dummy, n_events, n_alarms, offset)


def periodic_alarms(n_events: int, n_alarms: int, *, offset: int = 0) -> list[int]:
    """Alarm positions of river's `DummyDriftDetector` (fixed trigger) firing `n_alarms` times.

    The period t_0 is chosen so that the dummy fires as often as the detector it is matched with
    over a stream of `n_events` signal values (Bifet 2017: a periodic baseline with the same
    number of alarms).
    """
    if n_alarms <= 0:
        return []
    t0 = max(n_events // (n_alarms + 1), 1)
    dummy = drift.DummyDriftDetector(trigger_method="fixed", t_0=t0)
    return _dummy_alarms(dummy, n_events, n_alarms, offset)


def _dummy_alarms(
    dummy: drift.DummyDriftDetector, n_events: int, n_alarms: int, offset: int
) -> list[int]:
    """Feed `n_events` values to a dummy detector; its first `n_alarms` alarm positions."""
    out = []
    for i in range(n_events):
        dummy.update(0.0)
        if dummy.drift_detected:
            out.append(offset + i)
            if len(out) == n_alarms:
                break
    return out


def delta_max_for(n_events: int) -> int:
    """Acceptance window after a drift's end: 10% of the replay, at most 2000 events."""
    return max(1, min(2000, n_events // 10))


@dataclass(frozen=True)
class DetectorReport:
    """One detector of a run: its alarm count and, where the dataset has known change points,
    its score next to the periodic and random dummy baselines with the same alarm count."""

    detector: str
    signal: str
    alarms: int
    score: DetectionScore | None = None  # None: no ground truth to score against
    periodic: DetectionScore | None = None
    random: DetectionScore | None = None
    delta_max: int | None = None
    # how much the acceptance window decides the score: the score at 0.5x and 2x delta_max
    sensitivity: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Flat keys: the score's fields, and ``periodic_*`` / ``random_*`` for the baselines."""
        out: dict[str, Any] = {"detector": self.detector, "signal": self.signal}
        out["alarms"] = self.alarms
        if self.score is None:
            return out
        out.update(asdict(self.score))
        out["delta_max_sensitivity"] = self.sensitivity
        for prefix, base in (("periodic_", self.periodic), ("random_", self.random)):
            if base is not None:
                out.update({f"{prefix}{k}": v for k, v in asdict(base).items()})
        out["delta_max"] = self.delta_max
        return out


def detector_report(con: duckdb.DuckDBPyConnection, run_id: str) -> list[DetectorReport]:
    """One report per (detector, signal) of the run, scored against ground truth when the
    dataset has global drifts starting inside the replayed period."""
    run = run_info(con, run_id)
    bounds = con.execute(
        "SELECT min(idx), max(idx), count(*) FROM run_events_of(?)", [run_id]
    ).fetchall()[0]
    if not bounds[2]:
        return []
    first, last, n_events = int(bounds[0]), int(bounds[1]), int(bounds[2])
    drifts = con.execute(
        "SELECT start_idx, end_idx, start_ts FROM global_drifts(?)"
        " WHERE start_idx >= ? AND start_idx <= ? ORDER BY start_idx",
        [run["dataset"], first, last],
    ).fetchall()
    watched = sorted({(d["name"], d["signal"]) for d in run["manifest"].get("detectors", [])})
    delta_max = delta_max_for(n_events)
    reports = []
    for name, signal in watched:
        alarms = con.execute(
            "SELECT idx, ts FROM run_alarms_of(?) WHERE detector = ? AND signal = ? ORDER BY idx",
            [run_id, name, signal],
        ).fetchall()
        if not drifts:
            reports.append(DetectorReport(name, signal, len(alarms)))
            continue
        idx, ts = [a[0] for a in alarms], [a[1] for a in alarms]

        def scored(i: list[int], t: list[int], window: int = delta_max) -> DetectionScore:
            return score_alarms(i, t, drifts, n_events=n_events, delta_max=window)

        keys = ("detected", "missed_rate", "delay_events", "far_per_10k")
        sensitivity = {
            f"{factor}x": {
                k: v
                for k, v in asdict(scored(idx, ts, max(1, round(factor * delta_max)))).items()
                if k in keys
            }
            for factor in (0.5, 2)
        }
        periodic = periodic_alarms(n_events, len(alarms), offset=first)
        rand = random_alarms(n_events, len(alarms), offset=first)
        reports.append(
            DetectorReport(
                name,
                signal,
                len(alarms),
                score=scored(idx, ts),
                periodic=scored(periodic, _timestamps(con, run_id, periodic)),
                random=scored(rand, _timestamps(con, run_id, rand)),
                delta_max=delta_max,
                sensitivity=sensitivity,
            )
        )
    return reports


def _timestamps(con: duckdb.DuckDBPyConnection, run_id: str, idx: list[int]) -> list[int]:
    if not idx:
        return []
    found = dict(
        con.execute(
            "SELECT idx, ts FROM run_events_of(?) WHERE list_contains(?, idx)", [run_id, idx]
        ).fetchall()
    )
    return [int(found.get(i, 0)) for i in idx]
