"""Parquet exchange format of a stored dataset: one Parquet file per table plus ``meta.json``.

A directory written by `export_dataset` holds ``events.parquet`` (replay order), ``users``,
``items``, ``categories``, ``regimes`` and ``drifts`` (the last two empty for real logs) and
``meta.json`` (the ``datasets`` row). `import_dataset` stores it again through
`streamsim.store.write_dataset`, so the events fingerprint of the copy equals the original's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from streamsim.errors import IngestError
from streamsim.store import DatasetInfo, connect_memory, dataset_info, write_dataset

FORMAT_VERSION = 1

# file stem -> (table, columns in order)
_TABLES: dict[str, tuple[str, str]] = {
    "events": ("events", "idx, user_id, item_id, ts, category, rating"),
    "users": ("users", "user_id, raw"),
    "items": ("items", "item_id, raw, category, title, genres"),
    "categories": ("categories", "category, raw"),
    "regimes": ("event_regimes", "idx, regime"),
    "drifts": (
        "drifts",
        "drift_id, kind, drift_type, scope, magnitude, user_id, start_ts, end_ts, start_idx,"
        " end_idx",
    ),
}
_ORDER = {
    "events": "idx",
    "users": "user_id",
    "items": "item_id",
    "categories": "category",
    "regimes": "idx",
    "drifts": "drift_id",
}


def export_dataset(con: duckdb.DuckDBPyConnection, name: str, directory: str | Path) -> Path:
    """Write dataset `name` as Parquet files + ``meta.json`` into `directory` (created).

    Returns the directory. `StorageError` when the dataset does not exist.
    """
    info = dataset_info(con, name)
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for stem, (table, cols) in _TABLES.items():
        data = con.sql(
            f"SELECT {cols} FROM {table} WHERE dataset = $name ORDER BY {_ORDER[stem]}",
            params={"name": name},
        ).to_arrow_table()
        pq.write_table(data, out / f"{stem}.parquet")
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, **info.to_json()}
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def import_dataset(
    con: duckdb.DuckDBPyConnection,
    directory: str | Path,
    *,
    name: str | None = None,
    replace: bool = False,
) -> DatasetInfo:
    """Store a directory written by `export_dataset` (under `name`, default its original name).

    Raises `IngestError` naming the file when a file is missing or unreadable, and
    `StorageError` for a duplicate name without `replace`; the store is unchanged on failure.
    """
    root = Path(directory).expanduser()
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        msg = f"{meta_path}: file not found; expected a directory written by 'datasets export'"
        raise IngestError(msg)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{meta_path}: line {exc.lineno}: invalid JSON ({exc.msg})"
        raise IngestError(msg) from exc
    if meta.get("format_version") != FORMAT_VERSION:
        got = meta.get("format_version")
        msg = f"{meta_path}: format_version {got!r}; expected {FORMAT_VERSION}"
        raise IngestError(msg)
    tables: dict[str, pa.Table] = {}
    for stem in _TABLES:
        path = root / f"{stem}.parquet"
        if not path.is_file():
            msg = f"{path}: file not found; expected {stem} of the exported dataset"
            raise IngestError(msg)
        try:
            tables[stem] = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            msg = f"{path}: not a readable Parquet file ({exc})"
            raise IngestError(msg) from exc

    def store(target: duckdb.DuckDBPyConnection, replace_: bool) -> DatasetInfo:
        return write_dataset(
            target,
            name or str(meta["name"]),
            events=tables["events"],
            users=tables["users"],
            items=tables["items"],
            categories=tables["categories"],
            regimes=tables["regimes"] if tables["regimes"].num_rows else None,
            drifts=tables["drifts"],
            source=str(meta.get("source", root)),
            format=str(meta.get("format", "parquet-export")),
            params=dict(meta.get("params") or {}),
            replace=replace_,
        )

    # check the content against meta.json in a scratch store before touching the real one
    scratch = connect_memory()
    try:
        fingerprint = store(scratch, True).fingerprint
    finally:
        scratch.close()
    if fingerprint != meta.get("fingerprint"):
        msg = (
            f"{root / 'events.parquet'}: events fingerprint {fingerprint[:12]}...;"
            f" expected {str(meta.get('fingerprint'))[:12]}... from meta.json (files altered?)"
        )
        raise IngestError(msg)
    return store(con, replace)
