"""The front door: `run_scenario` runs `streamsim replay --scenario S` as one Python call.

    data ──► split ──► checkpoint (trained or reused) ──► one run per policy ──► summaries,
                                                          (build_engine, drive)   comparison,
                                                                                  dashboard

`run_scenario` checks the whole scenario before it writes anything, makes sure the scenario's
dataset is in the store (generating synthetic data when the scenario defines it, or failing
with the scenario's hint), resolves the split, trains or reuses the checkpoint, replays every
policy (one run each) and returns a typed `ScenarioResult`. The CLI parses flags, calls it and
renders the result; tests and benchmarks call it, or its parts: `prepare` (data, split,
checkpoint), `build_engine` (a `ReplayEngine` for one policy) and `drive` (feed the engine the
replay period, committing results every few micro-batches with the engine state for resume).

A run is identified by its *run key*: the content hash of the scenario without its list of
policies, plus the one policy it replays (`run_key`). So ``--policy reset`` and the full
scenario find each other's runs: with ``resume``, a finished run with the same key, seed and
checkpoint is kept instead of replayed again, and an unfinished one continues from its last
committed chunk.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from streamsim import health
from streamsim import scenario as scenario_mod
from streamsim.adapt import PolicySpec, random_reset_batches
from streamsim.calibration import Calibration, resolve_detectors
from streamsim.compare import Comparison, compare
from streamsim.errors import ScenarioError, StorageError
from streamsim.probe import SourceProbe, build_probe
from streamsim.progress import Progress, ReplayBatch, ReplayFinished, ReplayStarted
from streamsim.provenance import git_state, versions
from streamsim.replay import ReplayEngine, micro_batches
from streamsim.report import Contrast, RunSummary, contrasts, reading, summarize
from streamsim.runs import (
    create_run,
    find_run,
    finish_run,
    load_state,
    save_state,
    truncate_run,
    write_results,
)
from streamsim.scenario import Scenario
from streamsim.splits import PeriodCounts, Split, period_counts, resolve_split, split_report
from streamsim.store import (
    DatasetInfo,
    Workspace,
    dataset_info,
    global_drift_starts,
    has_dataset,
    iter_events,
)
from streamsim.train import Checkpoint, load_checkpoint, train
from streamsim.tuning import LRS, STEPS, Cell, Source, Sweep, resolve_auto, sweep

CHUNK_BATCHES = 10  # micro-batches per committed chunk (what a killed replay can lose)


@dataclass(frozen=True)
class Prepared:
    """A scenario's data, split and checkpoint: what every policy's replay shares."""

    info: DatasetInfo
    split: Split
    checkpoint: Checkpoint
    cold: dict[str, int] = field(default_factory=dict)  # `splits.split_report` of the split
    periods: tuple[PeriodCounts, ...] = ()  # dates and counts of each period
    # forgetting probes built for this scenario's replays, shared by its policies (same split,
    # seed and spacing give the same probe); filled by `build_engine`
    probes: dict[tuple[Any, ...], SourceProbe | None] = field(default_factory=dict)
    # detector calibrations (`streamsim.calibration`): the detectors as written -> the resolved
    # detectors and how their "auto" parameters were chosen
    calibrations: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[Calibration, ...]]] = field(
        default_factory=dict
    )

    @property
    def source(self) -> Source:
        """What a validation-window sweep replays (`streamsim.tuning`)."""
        return Source(self.info, self.split, self.checkpoint)


@dataclass(frozen=True)
class ScenarioResult:
    """What `run_scenario` did: the prepared data, one run per policy, their comparison."""

    scenario: Scenario
    prepared: Prepared
    run_ids: tuple[str, ...]  # in the scenario's policy order; the first is the baseline
    summaries: tuple[RunSummary, ...]
    comparison: Comparison | None  # None with a single policy
    dashboard: Path | None  # the HTML dashboard, when one was written
    # continual against reset with the same step, each label-free step against its placebo
    contrasts: tuple[Contrast, ...] = ()

    @property
    def training_health(self) -> dict[str, object]:
        """The kept epoch's training-health verdict (`streamsim.health`)."""
        ckpt = self.prepared.checkpoint
        return health.manifest_entry(ckpt.manifest.get("best", {}), ckpt.model_name)

    @property
    def health_warning(self) -> str | None:
        """A plain-words warning when the model collapsed or is at popularity level."""
        ckpt = self.prepared.checkpoint
        return health.warning_line(ckpt.manifest.get("best", {}), ckpt.model_name)

    @property
    def reading(self) -> list[str]:
        """One plain-language sentence per policy against the first, and per reset/continual
        pair (`report.reading`)."""
        return reading(self.summaries, self.comparison, self.contrasts)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "reading": self.reading,
            "training_health": self.training_health,
            "split_report": self.prepared.cold,
            "periods": [asdict(p) for p in self.prepared.periods],
            "checkpoint": str(self.prepared.checkpoint.path),
            "runs": [s.to_json() for s in self.summaries],
            "comparison": self.comparison.to_json() if self.comparison else None,
            "contrasts": [p.to_json() for p in self.contrasts],
            "dashboard": str(self.dashboard) if self.dashboard else None,
        }


def run_scenario(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    *,
    resume: bool = False,
    dashboard: bool = True,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Replay every policy of `scenario` and summarise the runs.

    Parameters
    ----------
    resume
        Keep finished runs with the same run key, seed and checkpoint, and continue unfinished
        ones from their last committed chunk, instead of starting new runs.
    dashboard
        Write the HTML dashboard of the runs into the workspace's ``dashboards/``.
    progress
        Called with typed events (`streamsim.progress`) while training and replaying.
    """
    scenario_mod.check(scenario)  # everything checkable before the first write
    prepared = prepare(con, workspace, scenario, progress=progress)
    run_ids = tuple(
        replay_policy(con, workspace, scenario, policy, prepared, resume=resume, progress=progress)
        for policy in scenario.policies
    )
    return scenario_result(con, workspace, scenario, prepared, run_ids, dashboard=dashboard)


def scenario_result(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    prepared: Prepared,
    run_ids: tuple[str, ...],
    *,
    dashboard: bool = True,
) -> ScenarioResult:
    """Summaries, the comparison with the first run, the contrasts and the dashboard of the
    stored runs of one scenario."""
    summaries = tuple(summarize(con, run_id) for run_id in run_ids)
    comparison = compare(con, list(run_ids)) if len(run_ids) > 1 else None
    pairs = contrasts(con, summaries)
    path = _write_dashboard(con, workspace, run_ids, scenario.name) if dashboard else None
    return ScenarioResult(scenario, prepared, run_ids, summaries, comparison, path, pairs)


def tune(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    *,
    rules: Sequence[str],
    lrs: Sequence[float] = LRS,
    steps: Sequence[int] = STEPS,
) -> tuple[Prepared, tuple[Sweep, ...]]:
    """`streamsim tune`: the scenario's data and checkpoint, then one validation-window sweep
    per test-time step rule (`streamsim.tuning`)."""
    scenario_mod.check(scenario)
    import models

    cls = models.get(scenario.model.name).cls
    needs_loss = [r for r in rules if r in ("model", "placebo")]
    if needs_loss and not cls.has_test_time_loss:
        msg = (
            f"step rules {needs_loss} need the model's own test-time loss; model"
            f" {scenario.model.name!r} has none (try 'entropy' or 'selfsup')"
        )
        raise ScenarioError(msg)
    prepared = prepare(con, workspace, scenario)
    sweeps = tuple(
        sweep(con, workspace, scenario, prepared.source, rule=r, lrs=lrs, steps=steps)
        for r in rules
    )
    return prepared, sweeps


def ensure_data(con: duckdb.DuckDBPyConnection, scenario: Scenario) -> DatasetInfo:
    """The scenario's dataset, generated first for synthetic scenarios."""
    data = scenario.data
    if data.synthetic is not None:
        from streamsim.synth import ensure_synthetic

        return ensure_synthetic(con, data.dataset, data.synthetic, scenario.seed)
    if not has_dataset(con, data.dataset):
        how = data.hint or (f"streamsim datasets fetch {data.fetch}" if data.fetch else "")
        msg = (
            f"scenario {scenario.name!r} needs dataset {data.dataset!r}, which is not in the store"
        )
        if how:
            msg += f"\n\nHint: {how}"
        raise StorageError(msg)
    return dataset_info(con, data.dataset)


def prepare(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    *,
    progress: Progress | None = None,
    force: bool = False,
) -> Prepared:
    """The scenario's dataset (generated when synthetic), its split and its checkpoint
    (trained, or reused from the workspace unless `force`)."""
    info = ensure_data(con, scenario)
    split = resolve_split(con, info.name, scenario.split)
    checkpoint = train(
        con,
        info.name,
        split,
        scenario.model,
        scenario.train,
        seed=scenario.seed,
        workspace=workspace,
        progress=progress,
        force=force,
    )
    cold = split_report(con, info.name, split)
    return Prepared(info, split, checkpoint, cold, period_counts(con, info.name, split))


def run_key(scenario: Scenario, policy: PolicySpec) -> str:
    """The content hash of what determines one policy's run: the scenario without its list of
    policies, plus this policy. Stored as the run's ``scenario_hash``."""
    body = scenario_mod.to_dict(scenario)
    for key in ("path", "content_hash", "policies", "description"):
        body.pop(key, None)
    body["policy"] = asdict(policy)
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def replay_end(scenario: Scenario, split: Split) -> int:
    """The replay index after the last replayed event (`max_events` applied)."""
    stop = split.replay.stop
    if scenario.replay.max_events is not None:
        stop = min(stop, split.replay.start + scenario.replay.max_events)
    return stop


def build_engine(
    con: duckdb.DuckDBPyConnection,
    scenario: Scenario,
    policy: PolicySpec,
    prepared: Prepared,
) -> ReplayEngine:
    """A fresh engine for one policy: the checkpoint's model, the scenario's detectors, the
    shared forgetting probe and, for the diagnostic oracle reset, the ground-truth drifts."""
    info, split = prepared.info, prepared.split
    stop = replay_end(scenario, split)
    model = load_checkpoint(prepared.checkpoint)
    replay = scenario.replay
    key = (model.max_len, stop, replay.probe_events, replay.probe_every, scenario.seed)
    if key not in prepared.probes:
        prepared.probes[key] = build_probe(
            con,
            info.name,
            split,
            probe_events=scenario.replay.probe_events,
            probe_every=scenario.replay.probe_every,
            max_len=model.max_len,
            replay_events=stop - split.replay.start,
            seed=scenario.seed,
        )
    drift_starts: tuple[int, ...] = ()
    if policy.reset_at_drifts:
        drift_starts = global_drift_starts(con, info.name)
        if not drift_starts:
            msg = (
                f"policy {policy.name!r} resets at ground-truth drifts (reset_at_drifts), but"
                f" dataset {info.name!r} has no global drifts in its ground truth; expected a"
                " synthetic scenario with [[data.synthetic.drifts]]"
            )
            raise ScenarioError(msg)
    reset_batches = frozenset[int]()
    if policy.reset_random:
        n_batches = count_micro_batches(con, scenario, prepared)
        reset_batches = random_reset_batches(policy, n_batches=n_batches, seed=scenario.seed)
    return ReplayEngine(
        model,
        policy,
        scenario.replay,
        scenario.detectors,
        n_users=info.n_users,
        n_items=info.n_items,
        seed=scenario.seed,
        probe=prepared.probes[key],
        drift_starts=drift_starts,
        reset_batches=reset_batches,
    )


def count_micro_batches(
    con: duckdb.DuckDBPyConnection, scenario: Scenario, prepared: Prepared
) -> int:
    """How many micro-batches the replay period makes (a pass over its events in
    window mode; arithmetic in count mode)."""
    split = prepared.split
    stop = replay_end(scenario, split)
    if scenario.replay.batch_window_s is None:
        return -(-(stop - split.replay.start) // scenario.replay.batch_events)
    events = iter_events(
        con, prepared.info.name, start_idx=split.replay.start, stop_idx=stop,
        tie_seed=scenario.replay.tie_shuffle_seed,
    )  # fmt: skip
    return sum(1 for _ in micro_batches(events, scenario.replay))


def replay_policy(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    policy: PolicySpec,
    prepared: Prepared,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    chunk_batches: int = CHUNK_BATCHES,
) -> str:
    """Replay one policy and store its results; returns the run id.

    With `resume`, a finished run with the same run key, seed and checkpoint is returned as it
    is, and an unfinished one continues from its last committed chunk.
    """
    key = run_key(scenario, policy)
    found = None
    if resume:
        found = find_run(
            con,
            scenario_hash=key,
            seed=scenario.seed,
            checkpoint_hash=prepared.checkpoint.hash,
        )
    if found is not None and found[1] == "complete":
        if progress is not None:
            progress(ReplayFinished(policy.name, found[0], reused=True))
        return found[0]
    chosen, cell = resolve_auto(con, workspace, scenario, prepared.source, policy)
    scenario = with_calibrated_detectors(con, scenario, prepared)
    engine = build_engine(con, scenario, chosen, prepared)
    tie = scenario.replay.tie_shuffle_seed
    run_id = found[0] if found is not None else None
    state_path = _state_path(workspace, run_id) if run_id is not None else None
    if run_id is not None and state_path is not None and state_path.exists():
        engine.load_state(load_state(state_path))
        truncate_run(con, run_id, after_batch=engine.next_batch_id - 1)
    else:
        if run_id is not None:  # killed before its first chunk: start it again from scratch
            truncate_run(con, run_id, after_batch=-1)
        else:
            run_id = new_run(con, scenario, policy, prepared, key=key, chosen=chosen, tuned=cell)
        split = prepared.split
        start, stop = split.pretrain.start, split.replay.start  # nothing before pretraining
        name = prepared.info.name
        engine.warm_up(iter_events(con, name, start_idx=start, stop_idx=stop, tie_seed=tie))
    drive(
        con,
        engine,
        run_id,
        scenario=scenario,
        prepared=prepared,
        state_path=_state_path(workspace, run_id),
        progress=progress,
        chunk_batches=chunk_batches,
    )
    return run_id


def new_run(
    con: duckdb.DuckDBPyConnection,
    scenario: Scenario,
    policy: PolicySpec,
    prepared: Prepared,
    *,
    key: str,
    chosen: PolicySpec,
    tuned: Cell | None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Create the run row of `policy` (as written; `chosen`: with its rate resolved) and return
    its id. `key` is `run_key` of the scenario as written (before its "auto" detector
    parameters were calibrated), which a resumed replay looks its runs up by; `extra` adds
    manifest entries."""
    run_id = f"{scenario.name}-{policy.name}-{uuid.uuid4().hex[:8]}"
    create_run(
        con,
        run_id=run_id,
        dataset=prepared.info.name,
        scenario=scenario.name,
        scenario_hash=key,
        data_fingerprint=prepared.info.fingerprint,
        model=prepared.checkpoint.model_name,
        checkpoint_hash=prepared.checkpoint.hash,
        policy=policy.name,
        seed=scenario.seed,
        manifest=_manifest(scenario, chosen, prepared, key=key, tuned=tuned) | (extra or {}),
    )
    return run_id


def drive(
    con: duckdb.DuckDBPyConnection,
    engine: ReplayEngine,
    run_id: str,
    *,
    scenario: Scenario,
    prepared: Prepared,
    state_path: Path,
    progress: Progress | None = None,
    chunk_batches: int = CHUNK_BATCHES,
) -> None:
    """Feed the engine the rest of the replay period, committing every `chunk_batches`
    micro-batches (results and engine state), then mark the run complete and drop its state."""
    split, dataset = prepared.split, prepared.info.name
    stop = replay_end(scenario, split)
    tie = scenario.replay.tie_shuffle_seed
    if tie is None:  # source order: resume at the first index not replayed
        events = iter_events(con, dataset, start_idx=engine.next_idx, stop_idx=stop)
    else:  # shuffled ties: resume after the events already replayed in that order
        events = iter_events(
            con, dataset, start_idx=split.replay.start, stop_idx=stop, tie_seed=tie,
            skip=engine.n_replayed,
        )  # fmt: skip
    total = stop - split.replay.start
    policy = engine.policy.name
    if progress is not None:
        progress(ReplayStarted(policy, run_id, total, engine.n_replayed))
    started, n_done, done, pending = time.perf_counter(), 0, engine.n_replayed, []
    for eb in micro_batches(events, scenario.replay, first_batch_id=engine.next_batch_id):
        result = engine.step(eb)
        pending.append(result)
        n_done += len(eb)
        done += len(eb)
        if progress is not None:
            progress(ReplayBatch(policy, result, done, total))
        if len(pending) >= chunk_batches:
            write_results(con, run_id, pending)
            save_state(state_path, engine.state())
            pending = []
    write_results(con, run_id, pending)
    elapsed = time.perf_counter() - started
    finish_run(con, run_id, events_per_s=n_done / max(elapsed, 1e-9))
    state_path.unlink(missing_ok=True)
    if progress is not None:
        progress(ReplayFinished(policy, run_id))


def _state_path(workspace: Workspace, run_id: str) -> Path:
    return workspace.subdir("runs") / run_id / "state.pt"


def _write_dashboard(
    con: duckdb.DuckDBPyConnection, workspace: Workspace, run_ids: tuple[str, ...], name: str
) -> Path:
    from dashboards.page import write_dashboard

    path = workspace.subdir("dashboards") / f"{name}-{run_ids[0].rsplit('-', 1)[-1]}.html"
    return Path(write_dashboard(con, list(run_ids), path))


def with_calibrated_detectors(
    con: duckdb.DuckDBPyConnection, scenario: Scenario, prepared: Prepared
) -> Scenario:
    """The scenario with its "auto" detector parameters calibrated on the validation window
    (once per set of detectors and prepared data: every policy watches with the same
    thresholds)."""
    if not any(d.auto for d in scenario.detectors):
        return scenario
    # keyed by content: a parameter value may be a list (unhashable)
    key = (json.dumps([asdict(d) for d in scenario.detectors], sort_keys=True, default=str),)
    if key not in prepared.calibrations:
        resolved, cals = resolve_detectors(con, scenario, prepared.source)
        prepared.calibrations[key] = (resolved.detectors, cals)
    detectors, _ = prepared.calibrations[key]
    return replace(scenario, detectors=detectors)


def _manifest(
    scenario: Scenario, policy: PolicySpec, prepared: Prepared, *, key: str, tuned: Cell | None
) -> dict[str, Any]:
    return {
        # the rate an ``auto`` policy got on the validation window, with that cell of the sweep
        "tta_lr_auto": asdict(tuned) if tuned is not None else None,
        "scenario": scenario.name,
        "scenario_path": str(scenario.path),
        "scenario_hash": scenario.content_hash,
        "run_key": key,
        "policy": asdict(policy),
        "diagnostic": policy.diagnostic,
        "replay": asdict(scenario.replay),
        "detectors": [asdict(d) for d in scenario.detectors],
        # "auto" detector parameters and how they were chosen on the validation window
        "detectors_calibrated": [
            asdict(c)
            for resolved, cals in prepared.calibrations.values()
            if resolved == scenario.detectors
            for c in cals
        ],
        "split": {k: asdict(getattr(prepared.split, k)) for k in ("pretrain", "valid", "replay")},
        "split_report": prepared.cold,  # replay events with users / items unseen before the cut
        "checkpoint": str(prepared.checkpoint.path),
        "model": prepared.checkpoint.model_name,
        "model_config": prepared.checkpoint.config,
        "training_health": health.manifest_entry(
            prepared.checkpoint.manifest.get("best", {}), prepared.checkpoint.model_name
        ),
        "data_fingerprint": prepared.info.fingerprint,
        "seed": scenario.seed,
        "exclude_seen": scenario.replay.exclude_seen,
        **git_state(),
        "versions": versions(),
    }
