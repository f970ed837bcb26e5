"""Choosing a test-time learning rate on the validation window, never on the replay period.

The validation window is replayed exactly as the replay period would be (same micro-batches,
same engine, warm-up on the events before it) once without adaptation and once per (step rule,
learning rate, steps per batch) under ``reset``; each setting is scored by its mean NDCG@10 on
the window and by the paired per-event difference from the frozen model. The chosen learning
rate of a rule is the one with the highest mean NDCG@10 (ties: the smaller rate, the smaller
step). A policy with ``tta_lr = "auto"`` gets the rate chosen for its step rule and its number
of steps; `streamsim tune` prints the whole sweep.

The sweep is stored in the workspace (``tuning/<key>.json``) under a key of everything that
determines it (checkpoint, split, replay settings, rule, grid), so a second replay reuses it.

The window is the one early stopping already chose the pretraining epoch on: choosing the rate
there too reuses no replay event, which is the point (the replay period stays untouched).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from streamsim.adapt import PolicySpec
from streamsim.errors import ScenarioError
from streamsim.replay import ReplayEngine, micro_batches
from streamsim.splits import Split
from streamsim.store import DatasetInfo, Workspace, iter_events
from streamsim.train import Checkpoint, load_checkpoint

if TYPE_CHECKING:
    from streamsim.scenario import Scenario


@dataclass(frozen=True)
class Source:
    """What a sweep replays: the dataset, its split (the validation window is replayed) and the
    pretrained checkpoint."""

    info: DatasetInfo
    split: Split
    checkpoint: Checkpoint


LRS = tuple(0.005 * 10.0**k for k in range(5))  # 0.005 × {1, 10, 10², 10³, 10⁴}
STEPS = (1, 5)


@dataclass(frozen=True)
class Cell:
    """One setting of the sweep on the validation window."""

    rule: str
    lr: float
    steps: int
    ndcg10: float  # mean NDCG@10 over the window's events
    diff: float  # paired mean difference from the frozen model
    diff_se: float  # its standard error (per-event differences)
    step_rel: float | None  # mean ||Δθ||/||θ|| per micro-batch
    skipped_steps: int  # non-finite steps not taken (a diverging rate)


@dataclass(frozen=True)
class Sweep:
    """A rule's sweep: the frozen model's level, every cell, and the chosen rate per steps."""

    rule: str
    frozen_ndcg10: float
    n_events: int
    cells: tuple[Cell, ...]

    def best(self, steps: int) -> Cell:
        """The cell with the highest NDCG@10 at `steps` steps per batch (ties: smaller lr)."""
        pool = [c for c in self.cells if c.steps == steps and math.isfinite(c.ndcg10)]
        if not pool:
            msg = f"the {self.rule!r} sweep has no cell with {steps} steps per micro-batch"
            raise ScenarioError(msg)
        return max(pool, key=lambda c: (c.ndcg10, -c.lr))

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "frozen_ndcg10": self.frozen_ndcg10,
            "n_events": self.n_events,
            "cells": [asdict(c) for c in self.cells],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        cells = tuple(Cell(**c) for c in data["cells"])
        return cls(data["rule"], float(data["frozen_ndcg10"]), int(data["n_events"]), cells)


def sweep(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    source: Source,
    *,
    rule: str,
    lrs: Sequence[float] = LRS,
    steps: Sequence[int] = STEPS,
    entropy_k: int = 10,
) -> Sweep:
    """The validation-window sweep of one step rule (stored; reused when it exists)."""
    key = _key(scenario, source, rule, lrs, steps, entropy_k)
    path = workspace.subdir("tuning") / f"{scenario.name}-{rule}-{key}.json"
    if path.exists():
        return Sweep.from_json(json.loads(path.read_text()))
    frozen = _window_ndcg(con, scenario, source, PolicySpec(name="none"))[0]
    cells = []
    for m in steps:
        for lr in lrs:
            policy = PolicySpec(
                name=f"tune-{rule}", tta="reset", tta_lr=lr, tta_steps=m, tta_step=rule,  # type: ignore[arg-type]
                entropy_k=entropy_k,
            )  # fmt: skip
            ndcg, step_rel, skipped = _window_ndcg(con, scenario, source, policy)
            d = ndcg - frozen
            se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
            cells.append(
                Cell(rule, lr, m, float(ndcg.mean()), float(d.mean()), se, step_rel, skipped)
            )
    result = Sweep(rule, float(frozen.mean()), len(frozen), tuple(cells))
    path.write_text(json.dumps(result.to_json(), indent=2))
    return result


def resolve_auto(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    scenario: Scenario,
    source: Source,
    policy: PolicySpec,
) -> tuple[PolicySpec, Cell | None]:
    """The policy with ``tta_lr = "auto"`` replaced by the rate chosen on the validation window
    for its rule and steps (a placebo: for the rule it copies), and that cell; other policies
    unchanged (None)."""
    if policy.tta_lr != "auto":
        return policy, None
    # a placebo takes the rate chosen for the rule it copies: the same step size, no signal
    result = sweep(
        con, workspace, scenario, source, rule=policy.step_loss, steps=(policy.tta_steps,),
        entropy_k=policy.entropy_k,
    )  # fmt: skip
    best = result.best(policy.tta_steps)
    return replace(policy, tta_lr=best.lr), best


def _window_ndcg(
    con: duckdb.DuckDBPyConnection, scenario: Scenario, source: Source, policy: PolicySpec
) -> tuple[np.ndarray, float | None, int]:
    """Per-event NDCG@10 of `policy` replayed over the validation window (in memory: nothing
    is stored), its mean step size and its skipped steps."""
    info, window = source.info, source.split.valid
    spec = replace(scenario.replay, probe_events=0, label_free_signals=False, step_effects=False)
    engine = ReplayEngine(
        load_checkpoint(source.checkpoint), policy, spec, (), n_users=info.n_users,
        n_items=info.n_items, seed=scenario.seed,
    )  # fmt: skip
    tie = spec.tie_shuffle_seed
    start = source.split.pretrain.start  # nothing before the pretraining period is read
    engine.warm_up(
        iter_events(con, info.name, start_idx=start, stop_idx=window.start, tie_seed=tie)
    )
    events = iter_events(con, info.name, start_idx=window.start, stop_idx=window.stop, tie_seed=tie)
    ndcg, rel, skipped = [], [], 0
    for eb in micro_batches(events, spec):
        result = engine.step(eb)
        ndcg.append(result.events.ndcg10)
        if result.batch.tta_step_rel is not None:
            rel.append(result.batch.tta_step_rel)
        skipped += result.batch.tta_skipped_steps
    values = np.concatenate(ndcg) if ndcg else np.zeros(0)
    return values, (float(np.mean(rel)) if rel else None), skipped


def _key(
    scenario: Scenario,
    source: Source,
    rule: str,
    lrs: Sequence[float],
    steps: Sequence[int],
    entropy_k: int,
) -> str:
    body = {
        "checkpoint": source.checkpoint.hash,
        "data": source.info.fingerprint,
        "window": asdict(source.split.valid),
        "replay": asdict(scenario.replay),
        "seed": scenario.seed,
        "rule": rule,
        "lrs": list(lrs),
        "steps": list(steps),
        "entropy_k": entropy_k,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
