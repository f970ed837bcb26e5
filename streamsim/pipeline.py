"""`streamsim replay --scenario S` as a function: data → split → checkpoint → one run per policy.

`run_scenario` makes sure the scenario's dataset is in the store (generating synthetic data when
the scenario defines it, or failing with the scenario's hint), resolves the split, trains or
reuses the checkpoint, then replays every policy and returns their summaries. The CLI only parses
flags, calls it and renders the result.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from streamsim import __version__, health
from streamsim.errors import ScenarioError, StorageError
from streamsim.probe import SourceProbe, build_probe
from streamsim.replay import BatchResult, ReplayEngine, micro_batches
from streamsim.runs import (
    create_run,
    find_resumable,
    finish_run,
    load_state,
    save_state,
    truncate_run,
    write_results,
)
from streamsim.scenario import PolicySpec, Scenario
from streamsim.splits import Split, resolve_split, split_report
from streamsim.store import DatasetInfo, Workspace, dataset_info, has_dataset, iter_events
from streamsim.train import Checkpoint, load_checkpoint, train

BatchProgress = Callable[[str, BatchResult, int], None]  # (policy, result, events in period)


@dataclass(frozen=True)
class Prepared:
    info: DatasetInfo
    split: Split
    checkpoint: Checkpoint
    cold: dict[str, int] = field(default_factory=dict)  # `splits.split_report` of the split
    # forgetting probes built for this scenario's replays, shared by its policies (same split,
    # seed and spacing give the same probe); filled by `replay_policy`
    probes: dict[tuple[Any, ...], SourceProbe | None] = field(default_factory=dict)


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
    train_progress: Callable[[dict[str, float]], None] | None = None,
) -> Prepared:
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
        progress=train_progress,
    )
    return Prepared(info, split, checkpoint, split_report(con, info.name, split))


def replay_policy(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    policy: PolicySpec,
    prepared: Prepared,
    *,
    resume: bool = False,
    progress: BatchProgress | None = None,
    chunk_batches: int = 10,
) -> str:
    """Replay one policy and store its results; returns the run id."""
    info, split, ckpt = prepared.info, prepared.split, prepared.checkpoint
    tie = scenario.replay.tie_shuffle_seed
    stop = split.replay.stop
    if scenario.replay.max_events is not None:
        stop = min(stop, split.replay.start + scenario.replay.max_events)
    model = load_checkpoint(ckpt)
    key = (
        model.max_len,
        stop,
        scenario.replay.probe_events,
        scenario.replay.probe_every,
        scenario.seed,
    )
    if key not in prepared.probes:
        prepared.probes[key] = build_probe(
            con,
            info.name,
            split,
            scenario.replay,
            max_len=model.max_len,
            replay_events=stop - split.replay.start,
            seed=scenario.seed,
        )
    probe = prepared.probes[key]
    drift_starts: tuple[int, ...] = ()
    if policy.reset_at_drifts:
        drift_starts = _drift_starts(con, info.name, policy.name)
    engine = ReplayEngine(
        model,
        policy,
        scenario.replay,
        scenario.detectors,
        n_users=info.n_users,
        n_items=info.n_items,
        seed=scenario.seed,
        probe=probe,
        drift_starts=drift_starts,
    )
    run_id = None
    if resume:
        run_id = find_resumable(
            con,
            scenario_hash=scenario.content_hash,
            policy=policy.name,
            seed=scenario.seed,
            checkpoint_hash=ckpt.hash,
        )
    state_path = None
    if run_id is not None and (workspace.subdir("runs") / run_id / "state.pt").exists():
        state_path = workspace.subdir("runs") / run_id / "state.pt"
        engine.load_state(load_state(state_path))
        truncate_run(con, run_id, after_batch=engine.next_batch_id - 1)
    else:
        if run_id is not None:  # killed before its first chunk: start it again from scratch
            truncate_run(con, run_id, after_batch=-1)
        else:
            run_id = f"{scenario.name}-{policy.name}-{uuid.uuid4().hex[:8]}"
            create_run(
                con,
                run_id=run_id,
                dataset=info.name,
                scenario=scenario.name,
                scenario_hash=scenario.content_hash,
                data_fingerprint=info.fingerprint,
                model=ckpt.model_name,
                checkpoint_hash=ckpt.hash,
                policy=policy.name,
                seed=scenario.seed,
                manifest=_manifest(scenario, policy, prepared),
            )
        engine.warm_up(iter_events(con, info.name, stop_idx=split.replay.start, tie_seed=tie))
    state_path = workspace.subdir("runs") / run_id / "state.pt"
    period = stop - split.replay.start
    started, n_done, pending = time.perf_counter(), 0, []
    if tie is None:  # source order: resume at the first index not replayed
        events = iter_events(con, info.name, start_idx=engine.next_idx, stop_idx=stop)
    else:  # shuffled ties: resume after the events already replayed in that order
        events = iter_events(
            con,
            info.name,
            start_idx=split.replay.start,
            stop_idx=stop,
            tie_seed=tie,
            skip=engine.n_replayed,
        )
    batches = micro_batches(events, scenario.replay, first_batch_id=engine.next_batch_id)
    for eb in batches:
        result = engine.step(eb)
        pending.append(result)
        n_done += len(eb)
        if progress is not None:
            progress(policy.name, result, period)
        if len(pending) >= chunk_batches:
            write_results(con, run_id, pending)
            save_state(state_path, engine.state())
            pending = []
    write_results(con, run_id, pending)
    elapsed = time.perf_counter() - started
    finish_run(con, run_id, events_per_s=n_done / max(elapsed, 1e-9))
    return run_id


def _drift_starts(con: duckdb.DuckDBPyConnection, dataset: str, policy: str) -> tuple[int, ...]:
    """Replay indices where the dataset's ground-truth global drifts start (oracle reset)."""
    rows = con.execute(
        "SELECT DISTINCT start_idx FROM drifts WHERE dataset = ? AND user_id IS NULL"
        " ORDER BY start_idx",
        [dataset],
    ).fetchall()
    if not rows:
        msg = (
            f"policy {policy!r} resets at ground-truth drifts (reset_at_drifts), but dataset"
            f" {dataset!r} has no global drifts in its ground truth; expected a synthetic"
            " scenario with [[data.synthetic.drifts]]"
        )
        raise ScenarioError(msg)
    return tuple(int(r[0]) for r in rows)


def _manifest(scenario: Scenario, policy: PolicySpec, prepared: Prepared) -> dict[str, Any]:
    import platform

    import numpy as np
    import river
    import torch

    return {
        "scenario": scenario.name,
        "scenario_path": str(scenario.path),
        "scenario_hash": scenario.content_hash,
        "policy": asdict(policy),
        "replay": asdict(scenario.replay),
        "detectors": [asdict(d) for d in scenario.detectors],
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
        **_git_state(),
        "versions": {
            "streamsim": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "river": river.__version__,
            "duckdb": duckdb.__version__,
            "python": platform.python_version(),
        },
    }


def _git_state() -> dict[str, Any]:
    """The source checkout's commit and whether it has uncommitted changes.

    Both are None when streamsim does not run from a git checkout of itself (an installed wheel
    inside some other repository must not report that repository's commit).
    """
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return {"git_revision": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_revision": git("rev-parse", "HEAD"), "git_dirty": bool(status)}
