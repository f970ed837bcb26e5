"""Parquet exchange format of a stored dataset: one Parquet file per table plus ``meta.json``.

A directory written by `export_dataset` holds ``events.parquet`` (replay order), ``users``,
``items``, ``categories``, ``regimes`` and ``drifts`` (the last two empty for real logs) and
``meta.json`` (the ``datasets`` row). `import_dataset` stores it again through
`streamsim.store.write_dataset`, so the events fingerprint of the copy equals the original's.

An imported directory is untrusted input: each file must have exactly its table's columns (cast to
the store's types), and ``meta.json`` must be an object with the expected fields; anything else is
an `IngestError` naming the file, before the store is touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from streamsim.errors import IngestError, StorageError
from streamsim.store import (
    EVENT_SCHEMA,
    DatasetInfo,
    connect_memory,
    dataset_info,
    quote_ident,
    write_dataset,
)

FORMAT_VERSION = 1

_I32, _I64, _F64, _STR = pa.int32(), pa.int64(), pa.float64(), pa.string()

# file stem -> (table, Arrow schema of the file: the table's columns minus ``dataset``, in order)
_TABLES: dict[str, tuple[str, pa.Schema]] = {
    "events": ("events", EVENT_SCHEMA),
    "users": ("users", pa.schema([("user_id", _I32), ("raw", _STR)])),
    "items": (
        "items",
        pa.schema(
            [
                ("item_id", _I32),
                ("raw", _STR),
                ("category", _I32),
                ("title", _STR),
                ("genres", _STR),
            ]  # fmt: skip
        ),
    ),
    "categories": ("categories", pa.schema([("category", _I32), ("raw", _STR)])),
    "regimes": ("event_regimes", pa.schema([("idx", _I64), ("regime", _I32)])),
    "drifts": (
        "drifts",
        pa.schema(
            [
                ("drift_id", _I32),
                ("kind", _STR),
                ("drift_type", _STR),
                ("scope", _F64),
                ("magnitude", _F64),
                ("user_id", _I32),
                ("start_ts", _I64),
                ("end_ts", _I64),
                ("start_idx", _I64),
                ("end_idx", _I64),
            ]  # fmt: skip
        ),
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stem, (table, schema) in _TABLES.items():
            cols_sql = ", ".join(quote_ident(c) for c in schema.names)
            table_sql, order_sql = quote_ident(table), quote_ident(_ORDER[stem])
            data = con.sql(
                f"SELECT {cols_sql} FROM {table_sql} WHERE dataset = $name ORDER BY {order_sql}",
                params={"name": name},
            ).to_arrow_table()
            pq.write_table(data, out / f"{stem}.parquet")
        meta: dict[str, Any] = {"format_version": FORMAT_VERSION, **info.to_json()}
        (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    except (OSError, pa.ArrowException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        msg = f"{out}: cannot write the export ({reason}); expected a writable directory"
        raise StorageError(msg) from None
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
    meta = _read_meta(meta_path, need_name=name is None)
    tables = {stem: _read_table(root / f"{stem}.parquet", stem, schema)
              for stem, (_, schema) in _TABLES.items()}  # fmt: skip

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


def _read_meta(path: Path, *, need_name: bool) -> dict[str, Any]:
    """``meta.json`` as a dict, checked: an object with the fields the import uses."""
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})"
        raise IngestError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read ({_first_line(exc)}); expected the JSON file written by"
        msg += " 'datasets export'"
        raise IngestError(msg) from None
    if not isinstance(meta, dict):
        msg = f"{path}: a JSON {type(meta).__name__}; expected an object"
        raise IngestError(msg)
    if meta.get("format_version") != FORMAT_VERSION:
        got = meta.get("format_version")
        msg = f"{path}: format_version {got!r}; expected {FORMAT_VERSION}"
        raise IngestError(msg)
    wanted = {"fingerprint": str, "params": dict} | ({"name": str} if need_name else {})
    for key, kind in wanted.items():
        if not isinstance(meta.get(key), kind):
            got = type(meta.get(key)).__name__ if key in meta else "nothing"
            msg = f"{path}: key {key!r} is {got}; expected a {kind.__name__}"
            raise IngestError(msg)
    return meta


def _read_table(path: Path, stem: str, schema: pa.Schema) -> pa.Table:
    """One exported table, with exactly `schema`'s columns, cast to its types."""
    if not path.is_file():
        msg = f"{path}: file not found; expected {stem} of the exported dataset"
        raise IngestError(msg)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        msg = f"{path}: not a readable Parquet file ({_first_line(exc)})"
        raise IngestError(msg) from None
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        msg = f"{path}: columns {table.column_names}; expected {schema.names}"
        raise IngestError(msg)
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        types = ", ".join(f"{f.name}: {f.type}" for f in schema)
        msg = f"{path}: column types do not fit ({_first_line(exc)}); expected {types}"
        raise IngestError(msg) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
