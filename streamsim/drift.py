"""river drift detectors by name, the signals they watch, and their scoring against ground truth.

Detectors are river's own classes, used through ``update(x)`` and ``drift_detected`` only (the
return value of ``update`` changed across river versions). Binary detectors (DDM, EDDM, HDDM_A,
HDDM_W, FHDDM) watch the per-event miss@10 bit; continuous ones (ADWIN, PageHinkley, KSWIN)
watch reciprocal rank, NDCG@10 (per event) or a per-batch label-free signal (the test-time loss,
the mean top-10 entropy of the scores).

Scoring follows river's proposed ``drift.evaluate`` semantics (PROTOCOL.md §4.1), written here
because river 0.26 does not ship it: an alarm inside a drift's acceptance window
``[start, end + delta_max]`` detects it (first such alarm gives the delay); every other alarm is
a false alarm.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import drift
from river.base import BinaryDriftDetector, DriftDetector
from river.drift import binary

from streamsim.errors import ScenarioError
from streamsim.scenario import DetectorSpec

CONTINUOUS: dict[str, type[DriftDetector]] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
}
BINARY: dict[str, type[BinaryDriftDetector]] = {
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
    "fhddm": binary.FHDDM,
}
# one value per scored event; entropy10 = the request's top-10 score entropy / ln 10, in [0, 1]
# (label-free: known before the target is revealed)
EVENT_SIGNALS = ("rr10", "ndcg10", "miss10", "entropy10")
BATCH_SIGNALS = ("tta_loss", "topk_entropy")  # one value per micro-batch


@dataclass
class Watch:
    """One detector instance watching one signal."""

    spec: DetectorSpec
    detector: DriftDetector | BinaryDriftDetector

    @property
    def label(self) -> str:
        return f"{self.spec.name}({self.spec.signal})"


def make_detector(spec: DetectorSpec, *, seed: int = 0) -> Watch:
    """A fresh river detector for `spec`; `ScenarioError` for unknown names or wrong signals.

    Detectors that draw random numbers (KSWIN samples its reference window) get `seed` unless
    the scenario sets their `seed` parameter, so alarms repeat run after run and on resume.
    """
    known = sorted(CONTINUOUS) + sorted(BINARY)
    if spec.name not in known:
        msg = f"unknown detector {spec.name!r}; expected one of {known}"
        raise ScenarioError(msg)
    signals = EVENT_SIGNALS + BATCH_SIGNALS
    if spec.signal not in signals:
        msg = f"unknown detector signal {spec.signal!r}; expected one of {list(signals)}"
        raise ScenarioError(msg)
    if (spec.name in BINARY) != (spec.signal == "miss10"):
        msg = (
            f"detector {spec.name!r} cannot watch {spec.signal!r}: binary detectors"
            f" {sorted(BINARY)} take the miss10 bit, continuous ones the real-valued signals"
        )
        raise ScenarioError(msg)
    cls: type[DriftDetector] | type[BinaryDriftDetector] = (
        CONTINUOUS[spec.name] if spec.name in CONTINUOUS else BINARY[spec.name]
    )
    params: dict[str, Any] = dict(spec.params)
    if "seed" in inspect.signature(cls).parameters:
        params.setdefault("seed", seed)
    try:
        return Watch(spec, cls(**params))
    except TypeError as exc:
        msg = f"detector {spec.name!r}: bad parameters {params}: {exc}"
        raise ScenarioError(msg) from None


def feed(watch: Watch, values: Sequence[float], positions: Sequence[int]) -> list[int]:
    """Update with `values` in order; return the positions at which a drift was detected."""
    alarms = []
    det = watch.detector
    for value, pos in zip(values, positions):
        if isinstance(det, BinaryDriftDetector):
            det.update(bool(value))
        else:
            det.update(float(value))
        if det.drift_detected:
            alarms.append(pos)
    return alarms


# ---------------------------------------------------------------------------------------------
# Scoring against ground truth
# ---------------------------------------------------------------------------------------------


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
    positions (PROTOCOL.md §6.8: the random-trigger dummy next to the fixed one). Seeded, so a
    run's report is reproducible.
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
