"""The run store: run manifests and the per-event / per-batch / alarm tables of every replay.

Results are committed in chunks of micro-batches, each chunk in one transaction together with the
run's progress counters; the engine state for `--resume` is written after the commit (atomic
rename), so a killed replay resumes from the last chunk whose state file exists, after deleting
any rows committed beyond it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamsim import records
from streamsim.errors import StorageError
from streamsim.records import EventRecords, StepResult
from streamsim.store import fetch_one, quote_ident

RUN_TABLES = ("run_events", "run_batches", "run_signals", "run_alarms")


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


def find_run(
    con: duckdb.DuckDBPyConnection,
    *,
    scenario_hash: str,
    seed: int,
    checkpoint_hash: str,
) -> tuple[str, str] | None:
    """(run id, status) of the run with this run key, seed and checkpoint that a resume should
    use: the newest complete one, else the newest unfinished one; None if there is neither."""
    row = fetch_one(
        con,
        "SELECT run_id, status FROM runs WHERE scenario_hash = ? AND seed = ?"
        " AND checkpoint_hash = ? ORDER BY status = 'complete' DESC, started DESC LIMIT 1",
        [scenario_hash, seed, checkpoint_hash],
    )
    return None if row is None else (str(row[0]), str(row[1]))


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
            "DELETE FROM run_signals WHERE run_id = ? AND batch_id > ?", [run_id, after_batch]
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


def write_results(con: duckdb.DuckDBPyConnection, run_id: str, results: list[StepResult]) -> None:
    """Append the results of consecutive micro-batches in one transaction."""
    if not results:
        return
    n = sum(len(r) for r in results)
    events = pa.table(
        {
            "run_id": pa.array([run_id] * n),
            **{
                name: np.concatenate([getattr(r.events, name) for r in results]).astype(dtype)
                for name, dtype in _EVENT_DTYPES.items()
            },
        }
    )
    batches = pa.Table.from_pylist(
        [{"run_id": run_id, **dataclasses.asdict(r.batch)} for r in results]
    )
    signals = pa.Table.from_pylist(
        [
            {"run_id": run_id, "batch_id": r.batch.batch_id, "signal": name, "value": value}
            for r in results
            for name, value in r.signals.items()
            if value is not None
        ],
        schema=pa.schema(
            [
                ("run_id", pa.string()),
                ("batch_id", pa.int64()),
                ("signal", pa.string()),
                ("value", pa.float64()),
            ]
        ),
    )
    alarms = pa.Table.from_pylist(
        [{"run_id": run_id, **a._asdict()} for r in results for a in r.alarms],
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
            ("run_signals", signals),
            ("run_alarms", alarms),
        ):
            if data.num_rows:
                con.register("_rows", data)
                cols = ", ".join(quote_ident(c) for c in data.column_names)
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


# numpy dtypes of the per-event columns (as `run_events` stores them)
_EVENT_DTYPES = {
    name: {"BIGINT": np.int64, "INTEGER": np.int32, "BOOLEAN": np.bool_, "DOUBLE": np.float64}[sql]
    for name, sql, _, _ in records.columns(EventRecords)
}


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, *, events_per_s: float) -> None:
    con.execute(
        "UPDATE runs SET status = 'complete', finished = ?, events_per_s = ? WHERE run_id = ?",
        [_now(), events_per_s, run_id],
    )


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the engine state atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch  # here, not at the top: commands that read runs never load torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    """The engine state saved by `save_state`, loaded with ``weights_only=True``: tensors,
    numbers and plain containers only, so a crafted file in a shared workspace cannot run code.
    Anything else is refused with a `StorageError` naming the file."""
    import torch

    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = (
            f"{path}: not a resume state this streamsim can load safely ({first});"
            " delete the file to start the run again"
        )
        raise StorageError(msg) from None
    if not isinstance(state, dict) or "next_batch_id" not in state:
        msg = (
            f"{path}: expected a replay resume state (a table with 'next_batch_id');"
            f" got {type(state).__name__}"
        )
        raise StorageError(msg)
    return state


def run_row(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """The ``runs`` row of `run_id` as a dict; `StorageError` naming some known runs if absent."""
    cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    rows = cur.fetchall()
    if not rows:
        known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started").fetchall()]
        msg = f"unknown run {run_id!r}; the store has {known[-20:]}"
        raise StorageError(msg)
    return dict(zip([d[0] for d in cur.description], rows[0]))


def labels_of(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Display labels of runs (their ``runs`` rows): the policy when every run has the same
    model, else ``model/policy``; when labels would repeat, the sweep cell a run came from
    (``none [train.lr=0.001]``, `tag_sweep_cell`) or else its run id is appended."""
    same_model = len({r["model"] for r in rows}) <= 1
    labels = [str(r["policy"]) if same_model else f"{r['model']}/{r['policy']}" for r in rows]
    if len(set(labels)) == len(labels):
        return tuple(labels)
    cells = [_sweep_cell(r) for r in rows]
    with_cells = [f"{label} [{cell}]" for label, cell in zip(labels, cells, strict=True)]
    if all(cells) and len(set(with_cells)) == len(with_cells):
        return tuple(with_cells)
    return tuple(f"{label} ({r['run_id']})" for label, r in zip(labels, rows, strict=True))


def _sweep_cell(row: dict[str, Any]) -> str | None:
    """The sweep-cell label stored in a run's manifest (None for a run not made by a sweep)."""
    try:
        cell = json.loads(str(row.get("manifest") or "{}")).get("sweep_cell")
    except ValueError:
        return None
    return str(cell) if cell else None


def tag_sweep_cell(con: duckdb.DuckDBPyConnection, run_ids: list[str], label: str) -> None:
    """Record in the runs' manifests which sweep cell they came from (labels, dashboards)."""
    for run_id in run_ids:
        manifest = dict(run_info(con, run_id)["manifest"])
        manifest["sweep_cell"] = label
        con.execute("UPDATE runs SET manifest = ? WHERE run_id = ?", [json.dumps(manifest), run_id])


def list_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every stored run, oldest first. A run still marked running is shown as 'interrupted':
    DuckDB lets one process at a time open the workspace, so while this connection is open no
    replay can be writing to it; such a run was killed (resume it with ``--resume``)."""
    cur = con.execute(
        "SELECT run_id, scenario, dataset, model, policy, seed,"
        " CASE status WHEN 'running' THEN 'interrupted' ELSE status END AS status, n_events,"
        " events_per_s, started FROM runs ORDER BY started"
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


def data_warning(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """A plain-words warning when the dataset a run replayed has been replaced since (a
    synthetic scenario regenerated with another seed under the same name, a re-ingest): its
    per-event metrics are its own, but whatever joins the dataset's current events (drift
    windows, categories, the dashboard's change markers) describes other data. None if it is
    unchanged."""
    row = fetch_one(
        con,
        "SELECT r.dataset, r.data_fingerprint, d.fingerprint FROM runs r"
        " LEFT JOIN datasets d ON d.name = r.dataset WHERE r.run_id = ?",
        [run_id],
    )
    if row is None or row[1] == row[2]:
        return None
    dataset, then, now = row
    if now is None:
        return f"run {run_id} replayed dataset {dataset!r}, which is no longer in the store"
    return (
        f"run {run_id} replayed an earlier version of dataset {dataset!r} (fingerprint"
        f" {str(then)[:12]}; the store now holds {str(now)[:12]}, e.g. regenerated with another"
        " seed): its own metrics stand, but drift windows, categories and change markers are"
        " those of the current data"
    )


def complete_runs(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> int:
    """How many of `run_ids` are in the store and complete."""
    row = fetch_one(
        con,
        "SELECT count(*) FROM runs WHERE list_contains(?, run_id) AND status = 'complete'",
        [run_ids],
    )
    return int(row[0]) if row is not None else 0


# a run's rows: its `runs` row and its result tables, each keyed by ``run_id``
EXPORTED_TABLES = ("runs", *RUN_TABLES)


def export_runs(con: duckdb.DuckDBPyConnection, run_ids: list[str], directory: Path) -> Path:
    """Every row of the runs `run_ids` as one Parquet file per table (`EXPORTED_TABLES`) in
    `directory`: what a sweep's worker hands to the process that owns the store."""
    directory.mkdir(parents=True, exist_ok=True)
    for table in EXPORTED_TABLES:
        data = con.sql(
            f"SELECT * FROM {table} WHERE list_contains($ids, run_id)", params={"ids": run_ids}
        ).to_arrow_table()
        pq.write_table(data, directory / f"{table}.parquet")
    return directory


def import_runs(con: duckdb.DuckDBPyConnection, directory: Path) -> list[str]:
    """Store the runs `export_runs` wrote into `directory`, in one transaction: rows of a run id
    already in the store (an earlier, interrupted import) are replaced. Returns the run ids.
    The store is unchanged when a file is missing or does not match the table."""
    tables = {}
    for table in EXPORTED_TABLES:
        path = directory / f"{table}.parquet"
        try:
            tables[table] = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            msg = f"{path}: cannot read the exported runs ({exc}); expected export_runs' file"
            raise StorageError(msg) from None
    ids = tables["runs"].column("run_id").to_pylist()
    con.execute("BEGIN TRANSACTION")
    try:
        for table in reversed(EXPORTED_TABLES):
            con.execute(f"DELETE FROM {table} WHERE list_contains(?, run_id)", [ids])
        for table in EXPORTED_TABLES:
            con.register("imported_rows", tables[table])
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM imported_rows")
            finally:
                con.unregister("imported_rows")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return [str(i) for i in ids]
