"""Detector thresholds calibrated on the validation window: ``params.<sensitivity> = "auto"``.

A detector's default threshold fits one signal's scale and not another's (ADWIN on the top-10
entropy is silent for one model and noisy for the next; the test-time loss has no natural
scale). With ``[detectors.params] delta = "auto"`` (the sensitivity parameter of each detector
is `streamsim.drift.SENSITIVITY`), the replay first feeds the detector the signal the frozen
model produces over the validation window — the window early stopping and the test-time rates
are chosen on, before the replay period, where no drift is assumed — stretches it by a
moving-block bootstrap to 40,000 values (a window of a few thousand cannot show a rate of a few
per 10k), and picks the most sensitive value of the detector's grid (`streamsim.drift.GRIDS`)
that raises at most half of `target_far` false alarms per 10,000 values there (the margin is
for the estimate's noise). The calibration is stored in the run manifest
(``detectors_calibrated``); the replay period is never read.

Every value of the grid raising more alarms than the target (a very noisy signal) is an error
naming the detector and the fewest alarms reached, not a silent choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from streamsim.adapt import PolicySpec
from streamsim.drift import GRIDS, SENSITIVITY, DetectorSpec, feed, make_detector
from streamsim.errors import ScenarioError
from streamsim.replay import ReplayEngine, micro_batches
from streamsim.store import iter_events
from streamsim.train import load_checkpoint

if TYPE_CHECKING:
    from streamsim.scenario import Scenario
    from streamsim.tuning import Source


NULL_LENGTH = 40_000  # values the window's signal is stretched to before counting alarms
BLOCK = 64  # block length of that stretch (about a micro-batch's events)


@dataclass(frozen=True)
class Calibration:
    """What an "auto" parameter became, and the evidence."""

    detector: str  # name:signal
    param: str
    value: float
    alarms: int  # alarms on the resampled validation stream with that value
    window_values: int  # signal values the detector was fed on the validation window
    stream_values: int  # the window's values stretched by a block bootstrap (`null_stream`)
    target_far: float  # false alarms per 10k values, at most


def auto_detector(name: str, signal: str, target_far: float) -> dict[str, object]:
    """A ``[[detectors]]`` table whose sensitivity parameter is calibrated ("auto")."""
    return {"name": name, "signal": signal, "params": {SENSITIVITY[name]: "auto"},
            "target_far": target_far}  # fmt: skip


def signal_series(
    con: duckdb.DuckDBPyConnection, scenario: Scenario, source: Source
) -> dict[str, list[float]]:
    """The values each of the scenario's detectors is fed over the validation window by the
    frozen model (`detector key -> values`, in feeding order; nothing is stored)."""
    specs = tuple(
        replace(d, params=tuple(p for p in d.params if p[1] != "auto")) for d in scenario.detectors
    )
    info, split = source.info, source.split
    spec = replace(scenario.replay, probe_events=0, step_effects=False)
    engine = ReplayEngine(
        load_checkpoint(source.checkpoint), PolicySpec(name="none"), spec, specs,
        n_users=info.n_users, n_items=info.n_items, seed=scenario.seed,
    )  # fmt: skip
    tie = spec.tie_shuffle_seed
    start, window = split.pretrain.start, split.valid
    warm = iter_events(con, info.name, start_idx=start, stop_idx=window.start, tie_seed=tie)
    engine.warm_up(warm)
    events = iter_events(con, info.name, start_idx=window.start, stop_idx=window.stop, tie_seed=tie)
    for eb in micro_batches(events, spec):
        engine.step(eb)
    return {w.spec.key: list(w.fed) for w in engine.watches}


def null_stream(values: list[float], *, length: int, block: int, seed: int) -> list[float]:
    """`values` stretched to `length` by a moving-block bootstrap (blocks of `block` consecutive
    values drawn with replacement from an owned generator): a longer stream with the window's
    distribution and short-range dependence, on which a rate of a few alarms per 10k can be
    measured at all (a 3,000-value window holds none at such a rate)."""
    if len(values) >= length or len(values) <= block:
        return list(values)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(values) - block + 1, size=-(-length // block))
    out = [v for s in starts.tolist() for v in values[s : s + block]]
    return out[:length]


def calibrate(
    spec: DetectorSpec, values: list[float], *, length: int = NULL_LENGTH, seed: int = 0
) -> Calibration:
    """The most sensitive grid value whose alarms on the window's values, stretched to `length`
    (`null_stream`), stay within half the target rate: the margin absorbs the estimate's noise,
    so the rate on a new stream stays under the target."""
    param = SENSITIVITY[spec.name]
    stream = null_stream(values, length=length, block=BLOCK, seed=seed)
    allowed = math.floor(spec.target_far / 2 * len(stream) / 10_000)
    fewest = None
    for value in GRIDS[spec.name]:
        params = tuple((k, value if k == param else v) for k, v in spec.params)
        watch = make_detector(replace(spec, params=params), seed=seed)
        alarms = len(feed(watch, stream, range(len(stream))))
        fewest = alarms if fewest is None else min(fewest, alarms)
        if alarms <= allowed:
            return Calibration(
                spec.key, param, value, alarms, len(values), len(stream), spec.target_far
            )
    msg = (
        f"detector {spec.key}: no {param} in {list(GRIDS[spec.name])} keeps the validation"
        f" window's signal under {spec.target_far} false alarms per 10k values (at most"
        f" {allowed} of {len(stream)} resampled values; the fewest reached {fewest}); expected a"
        " quieter signal or a higher target_far"
    )
    raise ScenarioError(msg)


def resolve_detectors(
    con: duckdb.DuckDBPyConnection, scenario: Scenario, source: Source
) -> tuple[Scenario, tuple[Calibration, ...]]:
    """The scenario with every "auto" detector parameter calibrated (unchanged without any)."""
    if not any(d.auto for d in scenario.detectors):
        return scenario, ()
    series = signal_series(con, scenario, source)
    resolved, done = [], []
    for d in scenario.detectors:
        if d.auto is None:
            resolved.append(d)
            continue
        cal = calibrate(d, series[d.key])
        resolved.append(replace(d, params=tuple((k, cal.value if k == cal.param else v)
                                                for k, v in d.params)))  # fmt: skip
        done.append(cal)
    return replace(scenario, detectors=tuple(resolved)), tuple(done)
