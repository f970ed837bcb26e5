"""Overall metrics of a run: SQL aggregates over its per-event table (``run_events``).

Every event of a replay stores the rank of its target in the full-catalogue ranking and the
derived per-event metrics (``hit10``, ``hit50``, ``ndcg10``, ``rr10``). A run's metric is the mean
over its events (docs/protocol.md); the same means are reported on the repeat / explore split (is
the target already in the user's history?) and on cold targets (items unseen anywhere before the
request), with the share of each group.

Metric names are the user-facing ones (``ndcg@10``, ``hr@10`` = ``recall@10``, ``hr@50``,
``mrr@10``); `metric_column` maps them to the SQL expression over ``run_events``.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb

from streamsim.errors import StreamsimError
from streamsim.runs import run_row
from streamsim.store import fetch_one

# user-facing metric name -> column of run_events
METRIC_COLUMNS: dict[str, str] = {
    "ndcg@10": "ndcg10",
    "hr@10": "hit10",
    "hr@50": "hit50",
    "mrr@10": "rr10",
}
# ... and the per-event SQL expression (as DOUBLE)
METRICS: dict[str, str] = {k: f"CAST({c} AS DOUBLE)" for k, c in METRIC_COLUMNS.items()}
ALIASES: dict[str, str] = {
    "recall@10": "hr@10",
    "recall@50": "hr@50",
    "ndcg10": "ndcg@10",
    "hit10": "hr@10",
    "hit50": "hr@50",
    "rr10": "mrr@10",
    "mrr10": "mrr@10",
}
# the groups every metric is split by: suffix -> SQL predicate
GROUPS: dict[str, str] = {"repeat": "is_repeat", "explore": "NOT is_repeat", "cold": "is_cold"}


class MetricError(StreamsimError):
    """An unknown metric name, or a run with no scored events."""


def canonical_metric(name: str) -> str:
    """The canonical name of `name` (``'NDCG10'`` -> ``'ndcg@10'``); `MetricError` if unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in METRICS:
        msg = f"unknown metric {name!r}; expected one of {sorted(METRICS) + sorted(ALIASES)}"
        raise MetricError(msg)
    return key


def metric_column(name: str, table: str | None = None) -> str:
    """SQL computing metric `name` per event of ``run_events`` (aliased `table`)."""
    column = METRIC_COLUMNS[canonical_metric(name)]
    return f"CAST({table + '.' if table else ''}{column} AS DOUBLE)"


def overall(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float]:
    """Mean metrics of a run over all its events, and split by repeat / explore / cold targets.

    Returns
    -------
    dict
        ``n_events``; ``hr@10``, ``recall@10`` (the same number: one target per event),
        ``hr@50``, ``ndcg@10``, ``mrr@10``, ``mean_rank``; for each group ``g`` in repeat /
        explore / cold: ``<metric>.<g>`` (NaN when the group is empty), ``n_events.<g>`` and
        ``share.<g>`` (fraction of the run's events).

    Raises
    ------
    StorageError
        The run does not exist.
    MetricError
        The run has no scored events.
    """
    run_row(con, run_id)  # StorageError for an unknown run
    parts = ["count(*)"]
    parts += [f"avg({expr})" for expr in METRICS.values()]
    parts.append("avg(CAST(rank AS DOUBLE))")
    for pred in GROUPS.values():
        parts.append(f"count(*) FILTER (WHERE {pred})")
        parts += [f"avg({expr}) FILTER (WHERE {pred})" for expr in METRICS.values()]
    row = fetch_one(con, f"SELECT {', '.join(parts)} FROM run_events_of(?)", [run_id])
    assert row is not None
    n = int(row[0])
    if n == 0:
        msg = f"run {run_id!r} has no scored events yet"
        raise MetricError(msg)
    values = iter(row[1:])
    out: dict[str, float] = {"n_events": float(n)}
    for name in METRICS:
        out[name] = _num(next(values))
    out["recall@10"] = out["hr@10"]
    out["mean_rank"] = _num(next(values))
    for group in GROUPS:
        n_group = int(next(values))
        out[f"n_events.{group}"] = float(n_group)
        out[f"share.{group}"] = n_group / n
        for name in METRICS:
            out[f"{name}.{group}"] = _num(next(values))
    return out


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)
