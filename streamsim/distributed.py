"""One replay across processes: ``torchrun --nproc-per-node N -m streamsim replay --distributed``.

What can run in parallel, and how (every rank is one process started by ``torchrun``; the
process group uses gloo, which carries Python objects on CPU and GPU machines alike):

- **Time chunks** (`none`, and `reset` without online updates or a sample filter). Such a
  policy carries no state from one micro-batch to the next except the histories and the
  catalogue, which are functions of the events before the batch: `reset` restores θ₀ bit for
  bit after every batch (tested), and its placebo draws from a stream seeded by the batch id.
  So the replay's micro-batches are cut into N contiguous ranges of equal event count; rank r
  warms its histories with every event before its range (as the one-process replay would have
  revealed them) and replays its range with the same batch ids and replay positions. Ranks
  return their per-event and per-batch rows; rank 0 feeds the detectors with every batch's
  detector inputs in replay order (so alarms are those of one process) and writes the run once.
  Per-event ranks equal the one-process replay's bit for bit (a test).
- **Everything else** (`continual`, `online`, a sample filter's running statistics, the
  drift-triggered and periodic resets): each micro-batch starts from the weights the previous
  one left, so the batches are sequential. These policies run on rank 0 alone while the other
  ranks wait. Not built: the data-parallel form in which each rank scores the users that hash to
  it and the test-time and online gradients are all-reduced (a rank would then need only its
  users' histories, at the cost of one all-reduce of the test-time parameters' gradients per
  micro-batch).

DuckDB allows one writer per database file: rank 0 opens the workspace's store (and trains and
tunes first, as `streamsim replay` does); it exports the dataset once as Parquet
(``distributed/<fingerprint>/`` in the workspace) and the other ranks load it into an in-memory
DuckDB, reuse rank 0's checkpoint and tuned rates from the workspace's files, and never open the
store. A distributed replay always starts new runs (no ``--resume``) and keeps no resume state.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import duckdb
import numpy as np
import torch.distributed as dist

from streamsim import scenario as scenario_mod
from streamsim.adapt import PolicySpec
from streamsim.drift import BATCH_SIGNALS, feed, make_detector
from streamsim.errors import ScenarioError
from streamsim.pipeline import (
    Prepared,
    ScenarioResult,
    build_engine,
    new_run,
    prepare,
    replay_end,
    replay_policy,
    run_key,
    scenario_result,
    with_calibrated_detectors,
)
from streamsim.progress import Progress, ReplayFinished, ReplayStarted
from streamsim.records import Alarm, StepResult
from streamsim.replay import micro_batches
from streamsim.runs import finish_run, write_results
from streamsim.scenario import Scenario
from streamsim.store import Workspace, connect_memory, iter_events
from streamsim.tuning import Cell, resolve_auto

TIMEOUT = timedelta(hours=12)  # rank 0 may pretrain for hours while the others wait


def init() -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (gloo); (rank, world size)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        msg = (
            "--distributed: expected to be started by torchrun (RANK and WORLD_SIZE unset), e.g."
            " torchrun --nproc-per-node 2 -m streamsim replay --scenario S --distributed"
        )
        raise ScenarioError(msg)
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def chunkable(policy: PolicySpec, scenario: Scenario) -> bool:
    """Whether `policy`'s micro-batches are independent given the events before them."""
    return (
        policy.tta in ("none", "reset")
        and not policy.online
        and policy.sample_filter is None
        and not policy.modifiers
        and scenario.replay.tie_shuffle_seed is None
    )


def batch_starts(
    con: duckdb.DuckDBPyConnection, scenario: Scenario, prepared: Prepared
) -> list[int]:
    """The replay index of every micro-batch's first event, in order."""
    split = prepared.split
    stop = replay_end(scenario, split)
    if scenario.replay.batch_window_s is None:
        return list(range(split.replay.start, stop, scenario.replay.batch_events))
    events = iter_events(con, prepared.info.name, start_idx=split.replay.start, stop_idx=stop)
    return [int(eb.idx[0]) for eb in micro_batches(events, scenario.replay)]


def rank_ranges(starts: list[int], stop: int, world: int) -> list[tuple[int, int]]:
    """Contiguous batch-id ranges [lo, hi), one per rank, of about equal event counts."""
    edges = np.asarray([*starts, stop])  # batch b covers edges[b] .. edges[b + 1]
    targets = np.linspace(edges[0], stop, world + 1)[1:-1]
    nearest = np.abs(edges[:, None] - targets[None, :]).argmin(axis=0)  # the closest boundary
    cuts = [0, *np.maximum.accumulate(nearest).tolist(), len(starts)]
    return [(int(cuts[r]), int(cuts[r + 1])) for r in range(world)]


Chunk = list[tuple[StepResult, list[list[float]]]]  # each batch's rows and detector inputs


def replay_chunk(
    con: duckdb.DuckDBPyConnection,
    scenario: Scenario,
    policy: PolicySpec,
    prepared: Prepared,
    lo: int,
    hi: int,
    starts: list[int],
) -> Chunk:
    """Micro-batches ``lo <= batch id < hi`` of `policy`, after the events before them; each
    batch's rows with the values every detector was fed (alarms are rank 0's to raise)."""
    if lo >= hi:
        return []
    split, name = prepared.split, prepared.info.name
    stop = starts[hi] if hi < len(starts) else replay_end(scenario, split)
    engine = build_engine(con, scenario, policy, prepared)
    engine.warm_up(iter_events(con, name, start_idx=split.pretrain.start, stop_idx=starts[lo]))
    engine.next_batch_id, engine.n_replayed = lo, starts[lo] - split.replay.start
    out: Chunk = []
    events = iter_events(con, name, start_idx=starts[lo], stop_idx=stop)
    for eb in micro_batches(events, scenario.replay, first_batch_id=lo):
        before = [len(w.fed) for w in engine.watches]
        result = engine.step(eb)
        out.append((result, [list(w.fed[b:]) for w, b in zip(engine.watches, before, strict=True)]))
    return out


def with_alarms(scenario: Scenario, chunk: Chunk) -> list[StepResult]:
    """Feed fresh detectors every batch's inputs in replay order; the batches with their
    alarms, as one process would have raised them."""
    watches = [make_detector(d, seed=scenario.seed) for d in scenario.detectors]
    out = []
    for result, fed in chunk:
        idx, ts = result.events.idx.tolist(), result.events.ts.tolist()
        ts_of = dict(zip(idx, ts, strict=True))
        alarms: list[Alarm] = []
        for watch, values in zip(watches, fed, strict=True):
            batch_signal = watch.spec.signal in BATCH_SIGNALS
            positions = [idx[-1]] * len(values) if batch_signal else idx
            hits = feed(watch, values, positions)
            alarms.extend(Alarm(watch.spec.name, watch.spec.signal, p, ts_of[p]) for p in hits)
        out.append(replace(result, alarms=tuple(alarms)))
    return out


def run_scenario_distributed(
    workspace: Workspace,
    scenario: Scenario,
    *,
    dashboard: bool = True,
    progress: Progress | None = None,
) -> ScenarioResult | None:
    """Replay every policy of `scenario` across the process group; rank 0 returns what
    `run_scenario` returns, the other ranks None."""
    rank, world = dist.get_rank(), dist.get_world_size()
    written = scenario  # as written: what run keys hash (before "auto" detectors are resolved)
    payload: list[Any] = [None, None, None]
    tuned: dict[str, Cell | None] = {}
    keys: dict[str, str] = {}
    if rank == 0:
        scenario_mod.check(scenario)  # everything checkable before the first write
        con = workspace.connect()
        prepared = prepare(con, workspace, scenario, progress=progress)
        snapshot = workspace.subdir("distributed") / prepared.info.fingerprint[:16]
        if not (snapshot / "meta.json").exists():
            from streamsim.parquet_io import export_dataset

            export_dataset(con, prepared.info.name, snapshot)
        keys = {p.name: run_key(scenario, p) for p in scenario.policies}  # as written
        scenario = with_calibrated_detectors(con, scenario, prepared)
        chosen = [
            resolve_auto(con, workspace, scenario, prepared.source, p) for p in scenario.policies
        ]
        tuned = {p.name: cell for p, (_, cell) in zip(scenario.policies, chosen, strict=True)}
        payload = [str(snapshot), scenario, [c for c, _ in chosen]]
    dist.broadcast_object_list(payload, src=0)
    if rank != 0:
        from streamsim.parquet_io import import_dataset

        con = connect_memory()
        import_dataset(con, payload[0])
        scenario = payload[1]
        prepared = prepare(con, workspace, scenario)  # rank 0's checkpoint, from the workspace
    resolved: list[PolicySpec] = payload[2]
    run_ids: list[str] = []
    for policy, spec in zip(scenario.policies, resolved, strict=True):
        if not chunkable(spec, scenario):  # sequential: rank 0 alone, the others wait
            if rank == 0:
                run_ids.append(
                    replay_policy(con, workspace, written, policy, prepared, progress=progress)
                )
            dist.barrier()
            continue
        started = time.perf_counter()
        starts = batch_starts(con, scenario, prepared)
        lo, hi = rank_ranges(starts, replay_end(scenario, prepared.split), world)[rank]
        chunk = replay_chunk(con, scenario, spec, prepared, lo, hi, starts)
        gathered: list[Chunk] | None = [[] for _ in range(world)] if rank == 0 else None
        dist.gather_object(chunk, gathered, dst=0)
        if rank == 0:
            assert gathered is not None
            results = with_alarms(scenario, [item for part in gathered for item in part])
            seconds = time.perf_counter() - started
            run_ids.append(
                _write(con, scenario, policy, spec, prepared, results, world=world,
                       key=keys[policy.name], tuned=tuned[policy.name], seconds=seconds,
                       progress=progress)
            )  # fmt: skip
    dist.barrier()
    if rank != 0:
        con.close()
        return None
    return scenario_result(con, workspace, scenario, prepared, tuple(run_ids), dashboard=dashboard)


def _write(
    con: duckdb.DuckDBPyConnection,
    scenario: Scenario,
    policy: PolicySpec,
    chosen: PolicySpec,
    prepared: Prepared,
    results: list[StepResult],
    *,
    world: int,
    key: str,
    tuned: Cell | None,
    seconds: float,
    progress: Progress | None,
) -> str:
    """Rank 0: one run from the ranks' batches (in batch order, alarms raised), written once;
    its events/s are the replay's wall time across the ranks."""
    extra = {"distributed": {"world_size": world, "mode": "time chunks"}}
    run_id = new_run(
        con, scenario, policy, prepared, key=key, chosen=chosen, tuned=tuned, extra=extra
    )
    total = sum(len(r) for r in results)
    if progress is not None:
        progress(ReplayStarted(policy.name, run_id, total, 0))
    write_results(con, run_id, results)
    finish_run(con, run_id, events_per_s=total / max(seconds, 1e-9))
    if progress is not None:
        progress(ReplayFinished(policy.name, run_id))
    return run_id
