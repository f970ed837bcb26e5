"""Known change points of a dataset: dates a user knows the interests shifted.

A real log has no generator's ground truth, so detector scoring, its periodic and random
baselines, the drift-aligned segments and the dashboard's change markers had nothing to work
with. `streamsim datasets changes NAME --add DATE` stores what the user knows as the same global
drift rows a synthetic stream carries (``drift_type = 'known'``):

- ``sudden`` (default): one change at ``START`` (``2024-03-02`` or ``2024-03-02T08:00:00+01:00``);
- ``gradual``: a window ``START..END``, detections counted from its start to its end (plus the
  usual acceptance window);
- ``recurring``: a weekly weekend regime from ``START`` (to ``END`` or the last event): one
  change at every switch, Saturday 00:00 and Monday 00:00 UTC, as the synthetic weekend shift
  has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import duckdb

from streamsim.errors import ScenarioError, StorageError
from streamsim.splits import as_epoch_seconds
from streamsim.store import add_known_changes, dataset_info

DAY = 86_400
KINDS = ("sudden", "gradual", "recurring")


@dataclass(frozen=True, slots=True)
class Change:
    """One change point (or window) in epoch seconds."""

    kind: Literal["sudden", "gradual", "recurring"]
    start_ts: int
    end_ts: int


def parse_change(text: str, kind: str, *, t_max: int) -> list[Change]:
    """``START`` or ``START..END`` (ISO dates or datetimes, UTC unless they name an offset) as
    the change points of `kind`; `StorageError` saying what was expected otherwise."""
    if kind not in KINDS:
        msg = f"--kind {kind!r}: expected one of {list(KINDS)}"
        raise StorageError(msg)
    start_text, _, end_text = text.partition("..")
    try:
        start = int(as_epoch_seconds(start_text, f"--add {text!r}"))
        end = int(as_epoch_seconds(end_text, f"--add {text!r}")) if end_text else None
    except ScenarioError as exc:  # from the shared date parser: the same words here
        raise StorageError(str(exc)) from None
    if end is not None and end < start:
        msg = f"--add {text!r}: the end is before the start"
        raise StorageError(msg)
    if kind == "sudden":
        if end is not None:
            msg = f"--add {text!r}: a sudden change is one date; use --kind gradual for a window"
            raise StorageError(msg)
        return [Change("sudden", start, start)]
    if kind == "gradual":
        if end is None:
            msg = f"--add {text!r}: a gradual change needs START..END"
            raise StorageError(msg)
        return [Change("gradual", start, end)]
    return [Change("recurring", t, t) for t in weekend_switches(start, end or t_max + 1)]


def weekend_switches(start: int, end: int) -> list[int]:
    """Saturday 00:00 and Monday 00:00 UTC in ``[start, end)``."""
    first = start - start % DAY
    out = []
    for day in range(first, end, DAY):
        weekday = datetime.fromtimestamp(day, tz=timezone.utc).weekday()
        if weekday in (5, 0) and start <= day < end:  # Saturday, Monday
            out.append(day)
    return out


def add_changes(
    con: duckdb.DuckDBPyConnection, dataset: str, dates: list[str], kind: str = "sudden"
) -> list[Change]:
    """Parse every date (all or nothing) and store the change points; the stored ones."""
    info = dataset_info(con, dataset)
    changes = []
    for text in dates:
        found = parse_change(text, kind, t_max=info.t_max)
        if not found:
            msg = f"--add {text!r}: no weekend switch (Saturday or Monday 00:00 UTC) in it"
            raise StorageError(msg)
        changes.extend(found)
    outside = [c for c in changes if not info.t_min <= c.start_ts <= info.t_max]
    if outside:
        first = datetime.fromtimestamp(outside[0].start_ts, tz=timezone.utc).isoformat()
        msg = (
            f"change at {first}: outside dataset {dataset!r}'s time span"
            f" ({_iso(info.t_min)} .. {_iso(info.t_max)})"
        )
        raise StorageError(msg)
    add_known_changes(con, dataset, [(c.kind, c.start_ts, c.end_ts) for c in changes])
    return changes


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def list_changes(con: duckdb.DuckDBPyConnection, dataset: str) -> list[dict[str, object]]:
    """Every global change of a dataset (a generator's or added), oldest first."""
    dataset_info(con, dataset)
    cur = con.execute(
        "SELECT drift_id, kind, drift_type, start_ts, end_ts, start_idx, end_idx"
        " FROM global_drifts(?) ORDER BY start_ts, drift_id",
        [dataset],
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        r["start"], r["end"] = _iso(int(r["start_ts"])), _iso(int(r["end_ts"]))
    return rows
