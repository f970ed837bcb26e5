"""Temporal splits over a stored dataset: pretraining | validation | replay.

Every cut falls on a timestamp boundary: an event belongs to the period whose time range holds its
timestamp, so events sharing a timestamp are never split across periods, and every pretraining
timestamp is strictly earlier than every validation timestamp, itself strictly earlier than every
replay timestamp (no future leakage, PROTOCOL.md P1).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from streamsim.errors import ScenarioError
from streamsim.scenario import SplitSpec
from streamsim.store import dataset_info, fetch_one, idx_at_time


@dataclass(frozen=True, slots=True)
class IndexRange:
    """Replay indices ``[start, stop[`` and their time range ``[t_start, t_stop[`` (seconds)."""

    start: int
    stop: int
    t_start: int
    t_stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class Split:
    pretrain: IndexRange
    valid: IndexRange
    replay: IndexRange


def _cut_time(con: duckdb.DuckDBPyConnection, dataset: str, by: str, value: float) -> int:
    """The timestamp at which a cut given as an event fraction or epoch seconds falls."""
    if by == "time":
        return int(value)
    info = dataset_info(con, dataset)
    position = min(int(value * info.n_events), info.n_events - 1)
    row = fetch_one(con, "SELECT ts FROM events WHERE dataset = ? AND idx = ?", [dataset, position])
    assert row is not None
    return int(row[0])


def resolve_split(con: duckdb.DuckDBPyConnection, dataset: str, spec: SplitSpec) -> Split:
    """Turn a `SplitSpec` into index ranges of `dataset`; `ScenarioError` when a period is empty."""
    info = dataset_info(con, dataset)
    if spec.by == "fraction":
        bounds = [spec.valid_start, spec.replay_start] + (
            [spec.replay_end] if spec.replay_end is not None else []
        )
        if not all(0.0 < b <= 1.0 for b in bounds) or sorted(bounds) != bounds:
            msg = (
                "[split] fractions must satisfy 0 < valid_start <= replay_start <= replay_end <= 1,"
                f" got {bounds}"
            )
            raise ScenarioError(msg)
    t_valid = _cut_time(con, dataset, spec.by, spec.valid_start)
    t_replay = _cut_time(con, dataset, spec.by, spec.replay_start)
    if spec.replay_end is None or (spec.by == "fraction" and spec.replay_end >= 1.0):
        t_end = info.t_max + 1
    else:
        t_end = _cut_time(con, dataset, spec.by, spec.replay_end)
    i_valid = idx_at_time(con, dataset, t_valid)
    i_replay = idx_at_time(con, dataset, t_replay)
    i_end = idx_at_time(con, dataset, t_end)
    split = Split(
        pretrain=IndexRange(0, i_valid, info.t_min, t_valid),
        valid=IndexRange(i_valid, i_replay, t_valid, t_replay),
        replay=IndexRange(i_replay, i_end, t_replay, t_end),
    )
    for period in ("pretrain", "replay"):
        if len(getattr(split, period)) == 0:
            msg = f"[split] the {period} period of dataset {dataset!r} is empty: {split}"
            raise ScenarioError(msg)
    return split
