"""The run store: run manifests and the per-event / per-batch / alarm tables of every replay.

Results are committed in chunks of micro-batches, each chunk in one transaction together with the
run's progress counters; the engine state for `--resume` is written after the commit (atomic
rename), so a killed replay resumes from the last chunk whose state file exists, after deleting
any rows committed beyond it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from streamsim.errors import StorageError
from streamsim.replay import BatchResult
from streamsim.store import fetch_one

RUN_TABLES = ("run_events", "run_batches", "run_alarms")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def create_run(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    dataset: str,
    scenario: str,
    scenario_hash: str,
    data_fingerprint: str,
    model: str,
    checkpoint_hash: str,
    policy: str,
    seed: int,
    manifest: dict[str, Any],
) -> None:
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, NULL, 0, -1, NULL)",
        [
            run_id,
            dataset,
            scenario,
            scenario_hash,
            data_fingerprint,
            model,
            checkpoint_hash,
            policy,
            seed,
            json.dumps(manifest, sort_keys=True, default=str),
            _now(),
        ],
    )


def find_resumable(
    con: duckdb.DuckDBPyConnection,
    *,
    scenario_hash: str,
    policy: str,
    seed: int,
    checkpoint_hash: str,
) -> str | None:
    """The newest unfinished run with these settings, if any."""
    row = fetch_one(
        con,
        "SELECT run_id FROM runs WHERE status = 'running' AND scenario_hash = ? AND policy = ?"
        " AND seed = ? AND checkpoint_hash = ? ORDER BY started DESC LIMIT 1",
        [scenario_hash, policy, seed, checkpoint_hash],
    )
    return None if row is None else str(row[0])


def truncate_run(con: duckdb.DuckDBPyConnection, run_id: str, *, after_batch: int) -> None:
    """Delete the rows of batches > `after_batch` (rows committed past the saved engine state)."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "DELETE FROM run_events WHERE run_id = ? AND batch_id > ?", [run_id, after_batch]
        )
        con.execute(
            "DELETE FROM run_batches WHERE run_id = ? AND batch_id > ?", [run_id, after_batch]
        )
        con.execute(
            "DELETE FROM run_alarms WHERE run_id = ? AND idx > coalesce((SELECT max(last_idx)"
            " FROM run_batches WHERE run_id = ?), -1)",
            [run_id, run_id],
        )
        con.execute(
            "UPDATE runs SET last_batch = ?, n_events = (SELECT count(*) FROM run_events"
            " WHERE run_id = ?) WHERE run_id = ?",
            [after_batch, run_id, run_id],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def write_results(con: duckdb.DuckDBPyConnection, run_id: str, results: list[BatchResult]) -> None:
    """Append the results of consecutive micro-batches in one transaction."""
    if not results:
        return
    events = pa.table(
        {
            "run_id": pa.array([run_id] * sum(len(r.batch) for r in results)),
            "idx": np.concatenate([r.batch.idx for r in results]),
            "batch_id": np.concatenate([np.full(len(r.batch), r.batch.batch_id) for r in results]),
            "ts": np.concatenate([r.batch.ts for r in results]),
            "user_id": np.concatenate([r.batch.users for r in results]).astype(np.int32),
            "item_id": np.concatenate([r.batch.items for r in results]).astype(np.int32),
            "rank": np.concatenate([r.ranks for r in results]),
            "hit10": np.concatenate([r.hit10 for r in results]),
            "hit50": np.concatenate([r.hit50 for r in results]),
            "ndcg10": np.concatenate([r.ndcg10 for r in results]),
            "rr10": np.concatenate([r.rr10 for r in results]),
            "is_repeat": np.concatenate([r.is_repeat for r in results]),
            "is_cold": np.concatenate([r.is_cold for r in results]),
            "top1": np.concatenate([r.top1 for r in results]).astype(np.int32),
        }
    )
    batches = pa.Table.from_pylist([_batch_row(run_id, r) for r in results])
    alarms = pa.Table.from_pylist(
        [
            {"run_id": run_id, "detector": d, "signal": s, "idx": i, "ts": t}
            for r in results
            for d, s, i, t in r.alarms
        ],
        schema=pa.schema(
            [
                ("run_id", pa.string()),
                ("detector", pa.string()),
                ("signal", pa.string()),
                ("idx", pa.int64()),
                ("ts", pa.int64()),
            ]
        ),
    )
    con.execute("BEGIN TRANSACTION")
    try:
        for table, data in (
            ("run_events", events),
            ("run_batches", batches),
            ("run_alarms", alarms),
        ):
            if data.num_rows:
                con.register("_rows", data)
                cols = ", ".join(data.column_names)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _rows")
                con.unregister("_rows")
        con.execute(
            "UPDATE runs SET last_batch = ?, n_events = n_events + ? WHERE run_id = ?",
            [results[-1].batch.batch_id, events.num_rows, run_id],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _batch_row(run_id: str, r: BatchResult) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "batch_id": r.batch.batch_id,
        "first_idx": int(r.batch.idx[0]),
        "last_idx": int(r.batch.idx[-1]),
        "n_events": len(r.batch),
        "t_start": int(r.batch.ts[0]),
        "t_end": int(r.batch.ts[-1]),
        "tta_loss_before": r.adapt.loss_before if r.adapt.loss_before is not None else r.tta_loss,
        "tta_loss_after": r.adapt.loss_after,
        "param_distance": r.param_distance,
        "backward_passes": r.backward_passes,
        "filtered_share": r.adapt.filtered_share,
        "tta_samples_saved": r.adapt.samples_saved,
        "tta_skipped_steps": r.adapt.skipped_steps,
        "delta_next_mean": r.delta_next_mean,
        "topk_entropy": r.topk_entropy,
        "coverage": r.coverage,
        "rec_gini": r.rec_gini,
        "top1_entropy": r.top1_entropy,
        "time_adapt": r.seconds["adapt"],
        "time_score": r.seconds["score"],
        "time_reveal": r.seconds["reveal"],
        "time_detect": r.seconds["detect"],
        "probe_ndcg10": r.probe_ndcg10,
        "probe_hr10": r.probe_hr10,
        "forgetting_ndcg10": r.forgetting_ndcg10,
        "forgetting_se": r.forgetting_se,
        "probe_top1_flip": r.probe_top1_flip,
        "time_probe": r.seconds.get("probe", 0.0),
        "tta_reset": r.tta_reset,
    }


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, *, events_per_s: float) -> None:
    con.execute(
        "UPDATE runs SET status = 'complete', finished = ?, events_per_s = ? WHERE run_id = ?",
        [_now(), events_per_s, run_id],
    )


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the engine state atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, weights_only=False)
    assert isinstance(state, dict)
    return state


def list_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute(
        "SELECT run_id, scenario, dataset, model, policy, seed, status, n_events, events_per_s,"
        " started FROM runs ORDER BY started"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def run_info(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    rows = cur.fetchall()
    row = rows[0] if rows else None
    if row is None:
        known = [r["run_id"] for r in list_runs(con)]
        msg = f"unknown run {run_id!r}; the store has {known[-20:]}"
        raise StorageError(msg)
    info = dict(zip([d[0] for d in cur.description], row))
    info["manifest"] = json.loads(info["manifest"])
    return info


def export_run(con: duckdb.DuckDBPyConnection, run_id: str, path: Path) -> Path:
    """The per-event table of a run as Parquet (``rank`` = 1-based position of the target)."""
    run_info(con, run_id)
    table = con.sql(
        "SELECT * EXCLUDE (run_id) FROM run_events WHERE run_id = ? ORDER BY idx", params=[run_id]
    ).to_arrow_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
