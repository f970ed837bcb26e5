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

A change may concern some users only (``--scope``): a CSV of user ids, or a category name (the
users with an event of that category before the change). It is then stored as a generator's
per-user switches are: the global row (time-based detector scoring is unchanged) with ``scope``
= the users' share, plus one row per user, which the per-user shift signal is scored against
(`streamsim.user_shift`) where a real log has no generator's regimes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import duckdb

from streamsim.errors import ScenarioError, StorageError
from streamsim.splits import as_epoch_seconds
from streamsim.store import add_known_changes, category_users, dataset_info, user_ids

DAY = 86_400
KINDS = ("sudden", "gradual", "recurring")
USER_HEADERS = ("user", "user_id", "userId", "userid")  # a users file's optional header


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
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    dates: list[str],
    kind: str = "sudden",
    *,
    scope: str | None = None,
) -> list[Change]:
    """Parse every date (all or nothing) and store the change points; the stored ones. With a
    `scope` (`scope_users`), each change concerns those users only."""
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
    if scope is None:
        add_known_changes(con, dataset, [(c.kind, c.start_ts, c.end_ts) for c in changes])
        return changes
    scoped = [(c, scope_users(con, dataset, scope, before_ts=c.start_ts)) for c in changes]
    for change, users in scoped:  # all resolved before the first is stored
        add_known_changes(con, dataset, [(change.kind, change.start_ts, change.end_ts)],
                          users=users)  # fmt: skip
    return changes


def scope_users(
    con: duckdb.DuckDBPyConnection, dataset: str, scope: str, *, before_ts: int
) -> list[int]:
    """The users a scoped change concerns (dense ids): a CSV file's user ids (one per line, the
    first field; an optional header ``user``/``user_id``/``userId``), or, for a category name,
    the users with an event of that category before the change. `StorageError` naming the file
    and line of a user the dataset does not have."""
    path = Path(scope).expanduser()
    if not path.is_file():
        users = category_users(con, dataset, scope, before_ts=before_ts)
        if not users:
            msg = f"--scope {scope!r}: no user has an event of that category before the change"
            raise StorageError(msg)
        return users
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            lines = enumerate(csv.reader(fh), 1)
            rows = [(n, r[0].strip()) for n, r in lines if r and r[0].strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        msg = f"{path}: cannot read the users file ({exc}); expected a CSV of user ids"
        raise StorageError(msg) from None
    if rows and rows[0][1] in USER_HEADERS:
        rows = rows[1:]
    if not rows:
        msg = f"{path}: no user ids; expected one user id per line"
        raise StorageError(msg)
    found = user_ids(con, dataset, [raw for _, raw in rows])
    missing = [(n, raw) for n, raw in rows if raw not in found]
    if missing:
        n, raw = missing[0]
        msg = (
            f"{path} line {n}: user {raw!r} is not in dataset {dataset!r}"
            f" ({len(missing)} of {len(rows)} ids unknown); expected the dataset's raw user ids"
        )
        raise StorageError(msg)
    return sorted({found[raw] for _, raw in rows})


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def list_changes(con: duckdb.DuckDBPyConnection, dataset: str) -> list[dict[str, object]]:
    """Every global change of a dataset (a generator's or added), oldest first."""
    dataset_info(con, dataset)
    cur = con.execute(
        "SELECT drift_id, kind, drift_type, start_ts, end_ts, start_idx, end_idx, scope"
        " FROM global_drifts(?) ORDER BY start_ts, drift_id",
        [dataset],
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        r["start"], r["end"] = _iso(int(r["start_ts"])), _iso(int(r["end_ts"]))
    return rows
