"""The summary of one run that `replay` and `runs show` print: metrics, quartiles, detectors."""

from __future__ import annotations

from typing import Any

import duckdb

from streamsim.detection import detector_report
from streamsim.metrics import overall
from streamsim.runs import run_info
from streamsim.segments import quartiles


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
    }
