"""The summary of one run that `replay` and `runs show` print: metrics, quartiles, detectors,
forgetting."""

from __future__ import annotations

from typing import Any

import duckdb

from streamsim.detection import detector_report
from streamsim.metrics import overall
from streamsim.runs import run_info
from streamsim.segments import quartiles
from streamsim.store import fetch_one


def summarize(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    info = run_info(con, run_id)
    q = quartiles(con, run_id, metric="ndcg10")
    return {
        "run_id": run_id,
        "policy": info["policy"],
        "n_events": int(info["n_events"]),
        "events_per_s": float(info["events_per_s"] or 0.0),
        "metrics": overall(con, run_id),
        "quartiles": [float(v) for v in q["value"].tolist()],
        "detectors": detector_report(con, run_id),
        "forgetting": forgetting(con, run_id),
        "tta_resets": tta_resets(con, run_id),
        "tta_skipped_steps": tta_skipped_steps(con, run_id),
        "health": health(con, run_id),
    }


def health(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float | None]:
    """Means over the run's micro-batches of the recommendation-diversity diagnostics
    (PROTOCOL.md §6.2): top-10 coverage of the catalogue, Gini of the top-10 counts, marginal
    entropy of the top-1 predictions, mean top-10 score entropy."""
    row = fetch_one(
        con,
        "SELECT avg(coverage), avg(rec_gini), avg(top1_entropy), avg(topk_entropy)"
        " FROM run_batches WHERE run_id = ?",
        [run_id],
    )
    assert row is not None
    keys = ("coverage", "rec_gini", "top1_entropy", "topk_entropy")
    return {k: None if v is None else float(v) for k, v in zip(keys, row)}


def tta_resets(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Periodic, drift-triggered or oracle restores of θ₀ by a continual policy (0 for others)."""
    row = fetch_one(
        con, "SELECT count(*) FILTER (WHERE tta_reset) FROM run_batches WHERE run_id = ?", [run_id]
    )
    assert row is not None
    return int(row[0])


def tta_skipped_steps(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Test-time steps skipped because the loss or a gradient was not finite (a diverged run)."""
    row = fetch_one(
        con,
        "SELECT coalesce(sum(tta_skipped_steps), 0) FROM run_batches WHERE run_id = ?",
        [run_id],
    )
    assert row is not None
    return int(row[0])


def forgetting(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float | int | None]:
    """The forgetting probe of a run (`streamsim.probe`): its points, the last forgetting of
    NDCG@10 (θ₀ minus current, on the probe) with its standard error, the largest one, and the
    probe NDCG@10 at the end. None (0 points) when the run has no probe."""
    row = fetch_one(
        con,
        "SELECT count(forgetting_ndcg10), arg_max(forgetting_ndcg10, batch_id)"
        " FILTER (WHERE forgetting_ndcg10 IS NOT NULL), arg_max(forgetting_se, batch_id)"
        " FILTER (WHERE forgetting_ndcg10 IS NOT NULL), max(forgetting_ndcg10),"
        " arg_max(probe_ndcg10, batch_id) FILTER (WHERE probe_ndcg10 IS NOT NULL),"
        " arg_max(probe_top1_flip, batch_id) FILTER (WHERE probe_top1_flip IS NOT NULL)"
        " FROM run_batches WHERE run_id = ?",
        [run_id],
    )
    assert row is not None
    n, last, se, worst, probe_last, flip = row
    return {
        "points": int(n),
        "last": None if last is None else float(last),
        "se_last": None if se is None else float(se),
        "max": None if worst is None else float(worst),
        "probe_ndcg10_last": None if probe_last is None else float(probe_last),
        "top1_flip_last": None if flip is None else float(flip),
    }
