"""The record vocabulary of a replay: what one micro-batch produces, column for column.

A run's results live in four tables, and the types here are their rows (less ``run_id``):

- `EventRecords` → ``run_events``: one row per scored event (numpy arrays, one per column);
- `BatchResult` → ``run_batches``: one row per micro-batch (adaptation step, probe, timings);
- `Alarm` → ``run_alarms``: one row per detector alarm;
- label-free signals → ``run_signals``: one row per (micro-batch, signal name, value), so a new
  signal (`SIGNALS`) needs no schema change.

The DDL of these tables is generated from the dataclasses (`table_ddl`), so a new per-batch
field is one line in `BatchResult`: the engine fills it, `streamsim.runs` writes it, the store's
read interface and older workspaces (`missing_columns`) follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np


def _col(doc: str, sql: str | None = None) -> Any:
    """A dataclass field that is a table column: its comment and, when not implied by the
    annotation, its SQL type."""
    return field(metadata={"doc": doc, "sql": sql})


@dataclass(frozen=True)
class EventRecords:
    """Per-event records of one micro-batch, in batch (= replay) order: ``run_events`` rows."""

    # the event
    idx: np.ndarray = _col("replay index of the event", "BIGINT")
    batch_id: np.ndarray = _col("micro-batch of the event", "BIGINT")
    ts: np.ndarray = _col("request time, epoch seconds", "BIGINT")
    user_id: np.ndarray = _col("user", "INTEGER")
    item_id: np.ndarray = _col("the target", "INTEGER")
    # how the target ranked, from the scores before it was revealed
    rank: np.ndarray = _col("1-based position of the target in the full ranking", "BIGINT")
    hit10: np.ndarray = _col("rank <= 10", "BOOLEAN")
    hit50: np.ndarray = _col("rank <= 50", "BOOLEAN")
    ndcg10: np.ndarray = _col("NDCG@10 of the single target", "DOUBLE")
    rr10: np.ndarray = _col("reciprocal rank cut at 10 (MRR@10)", "DOUBLE")
    # what kind of target it was, and what the model put first
    is_repeat: np.ndarray = _col("target already in the user's history", "BOOLEAN")
    is_cold: np.ndarray = _col("target unseen anywhere before the request", "BOOLEAN")
    top1: np.ndarray = _col("the top-1 recommended item", "INTEGER")

    def __len__(self) -> int:
        return int(self.idx.shape[0])


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """One micro-batch's ``run_batches`` row: its span, the adaptation step, the forgetting
    probe and the time per stage. `None` is SQL NULL (no step, no probe point)."""

    batch_id: int = _col("micro-batch id, 0-based in replay order")
    first_idx: int = _col("replay index of the first event")
    last_idx: int = _col("replay index of the last event")
    n_events: int = _col("events in the micro-batch", "INTEGER")
    t_start: int = _col("time of the first event, epoch seconds")
    t_end: int = _col("time of the last event, epoch seconds")
    # the test-time step(s) of an adapting policy (NULL when the policy does not adapt)
    tta_loss_before: float | None = _col("test-time loss on the inputs before the step(s)")
    tta_loss_after: float | None = _col("... and after them")
    filtered_share: float | None = _col("share of requests a sample filter left out")
    tta_samples_saved: int = _col("per-request gradient terms the filter skipped", "INTEGER")
    tta_skipped_steps: int = _col("steps not taken: non-finite loss or gradient", "INTEGER")
    tta_reset: bool = _col("theta_0 restored this batch: periodic, on alarm or oracle")
    # how far the test-time step moved the weights and what it changed (NULL: no step taken;
    # the effects are measured on each user's first request of the batch, the one adapted on)
    tta_step_norm: float | None = _col("||theta_after - theta_before|| of the step(s)")
    tta_step_rel: float | None = _col("... divided by ||theta_before||")
    tta_top10_changed: float | None = _col("share of top-10 lists the step changed")
    tta_rank_changed: float | None = _col("share of target ranks the step changed")
    tta_hit10_flips: int | None = _col("targets that entered or left the top 10", "INTEGER")
    param_distance: float = _col("||theta - theta_0|| after the batch")
    backward_passes: int = _col("backward passes: test-time and online", "INTEGER")
    # the forgetting probe after the batch (NULL between probe points)
    probe_ndcg10: float | None = _col("NDCG@10 of the weights after the batch on the probe")
    probe_hr10: float | None = _col("HR@10 of the same")
    forgetting_ndcg10: float | None = _col("NDCG@10(theta_0, probe) - probe_ndcg10")
    forgetting_se: float | None = _col("its standard error (paired per-request differences)")
    probe_top1_flip: float | None = _col("share of probe requests whose top-1 changed")
    # seconds per stage of `ReplayEngine.step`
    time_adapt: float = _col("seconds adapting")
    time_score: float = _col("seconds scoring (and restoring a reset policy)")
    time_reveal: float = _col("seconds revealing (histories, count models, online step)")
    time_detect: float = _col("seconds on label-free signals and detectors")
    time_probe: float = _col("seconds on the forgetting probe")


class Alarm(NamedTuple):
    """One ``run_alarms`` row: a detector fired on a signal at an event."""

    detector: str
    signal: str
    idx: int  # replay index of the event at which it fired
    ts: int  # its time


# label-free per-batch signals (``run_signals``), known before any target is revealed
SIGNALS: Mapping[str, str] = {
    "tta_loss": "the model's test-time loss on the inputs, before any step",
    "delta_next_mean": "mean Delta_{n+1} (T2ARec's step size for the next event)",
    "topk_entropy": "mean top-10 entropy of the scores (nats)",
    "coverage": "distinct top-10 items / catalogue size",
    "rec_gini": "Gini of the top-10 recommendation counts over the catalogue",
    "top1_entropy": "marginal entropy (nats) of the batch's top-1 predictions",
}


@dataclass(frozen=True)
class StepResult:
    """Everything one `ReplayEngine.step` produced: the rows of the four run tables."""

    events: EventRecords
    batch: BatchResult
    signals: Mapping[str, float | None]  # name in `SIGNALS` -> value (None: not available)
    alarms: tuple[Alarm, ...] = ()

    def __len__(self) -> int:
        return len(self.events)


# -- DDL generated from the dataclasses ------------------------------------------------------------

_SQL_OF = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "str": "VARCHAR"}


def columns(cls: type) -> list[tuple[str, str, bool, str]]:
    """(name, SQL type, nullable, comment) of every column of a record dataclass."""
    out = []
    for f in fields(cls):
        ann = str(f.type).replace(" ", "")
        nullable = ann.endswith("|None")
        base = ann.removesuffix("|None")
        sql = f.metadata.get("sql") or _SQL_OF[base]
        out.append((f.name, sql, nullable, f.metadata.get("doc", "")))
    return out


def table_ddl(table: str, cls: type) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for a record table: ``run_id`` first, then the fields."""
    cols = [("run_id VARCHAR NOT NULL", "")] + [
        (f"{name} {sql}{'' if nullable else ' NOT NULL'}", doc)
        for name, sql, nullable, doc in columns(cls)
    ]
    lines = [
        f"    {col}{',' if i < len(cols) - 1 else ''}" + (f"  -- {doc}" if doc else "")
        for i, (col, doc) in enumerate(cols)
    ]
    return f"CREATE TABLE IF NOT EXISTS {table} (\n" + "\n".join(lines) + "\n);\n"


def missing_columns(table: str, cls: type, present: set[str]) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for fields an older workspace's table lacks (nullable:
    its old rows have no value)."""
    return [
        f"ALTER TABLE {table} ADD COLUMN {name} {sql}"
        for name, sql, _, _ in columns(cls)
        if name not in present
    ]
