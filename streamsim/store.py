"""The workspace and the DuckDB event/run store: the only module that knows the table schemas.

A workspace is one directory::

    $STREAMSIM_HOME (default ~/.streamsim)
    ├── streamsim.duckdb      datasets, events, items, ground truth, runs
    ├── parquet/              Parquet exports (`streamsim datasets export`, `runs export`)
    ├── checkpoints/          trained weights (safetensors) + JSON manifests
    ├── runs/                 per-run scratch files
    └── dashboards/           HTML dashboards

Ids are remapped densely at ingest: users ``0..n_users-1`` and items ``1..n_items`` (item id 0 is
the padding id every model reserves); the original ids are kept in ``users.raw`` / ``items.raw``.
Timestamps are integer epoch seconds (UTC).

Replay order is the ``idx`` column: events sorted by timestamp, ties broken by the row order of
the source file (stable), so day-resolution data replays deterministically.

Every function takes an explicit `duckdb.DuckDBPyConnection`; nothing uses DuckDB's hidden global
connection. Writes that change more than one row happen inside one transaction, so a failure
leaves the store exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from streamsim import records
from streamsim.errors import StorageError

DEFAULT_HOME = Path("~/.streamsim")


def quote_ident(name: str) -> str:
    """`name` as a DuckDB quoted identifier: in double quotes, every ``"`` doubled.

    The one way a name that is not written in the source may enter SQL text
    (`tests/test_sql_guard.py` enforces it). A NUL character is refused: the SQL parser would end
    the statement text there.

    Examples
    --------
    >>> quote_ident('x" FROM t; COPY t TO \\'/tmp/x\\'; --')
    '"x"" FROM t; COPY t TO \\'/tmp/x\\'; --"'
    """
    if "\x00" in name:
        msg = f"identifier {name!r} contains a NUL character"
        raise ValueError(msg)
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """`text` as a SQL string literal: in single quotes, every ``'`` doubled (for SQL that
    cannot take a bound parameter, such as a macro body)."""
    if "\x00" in text:
        msg = f"literal {text!r} contains a NUL character"
        raise ValueError(msg)
    return "'" + text.replace("'", "''") + "'"


SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,      -- file path, URL or 'synthetic'
    format VARCHAR NOT NULL,      -- ingest format or generator name
    fingerprint VARCHAR NOT NULL, -- sha256 of the events in replay order
    created TIMESTAMP NOT NULL,
    n_events BIGINT NOT NULL,
    n_users INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    t_min BIGINT NOT NULL,        -- epoch seconds
    t_max BIGINT NOT NULL,
    has_category BOOLEAN NOT NULL,
    has_rating BOOLEAN NOT NULL,
    params VARCHAR NOT NULL       -- JSON: ingest options or generator parameters
);
CREATE TABLE IF NOT EXISTS events (
    dataset VARCHAR NOT NULL,
    idx BIGINT NOT NULL,          -- replay order 0..n-1: (ts, source row order)
    user_id INTEGER NOT NULL,     -- dense 0..n_users-1
    item_id INTEGER NOT NULL,     -- dense 1..n_items (0 = padding)
    ts BIGINT NOT NULL,           -- epoch seconds, UTC
    category INTEGER,             -- dense category id of the item, NULL when unknown
    rating REAL
);
CREATE TABLE IF NOT EXISTS users (
    dataset VARCHAR NOT NULL, user_id INTEGER NOT NULL, raw VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    dataset VARCHAR NOT NULL, item_id INTEGER NOT NULL, raw VARCHAR NOT NULL,
    category INTEGER,             -- primary category (dense id)
    title VARCHAR,
    genres VARCHAR                -- '|'-joined category names when the source has several
);
CREATE TABLE IF NOT EXISTS categories (
    dataset VARCHAR NOT NULL, category INTEGER NOT NULL, raw VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS event_regimes (
    dataset VARCHAR NOT NULL, idx BIGINT NOT NULL, regime INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS drifts (
    dataset VARCHAR NOT NULL,
    drift_id INTEGER NOT NULL,
    kind VARCHAR NOT NULL,        -- sudden | gradual | incremental | recurring | new_items
    drift_type VARCHAR NOT NULL,  -- real | virtual | known (a change point a user added)
    scope DOUBLE NOT NULL,        -- fraction of users affected
    magnitude DOUBLE NOT NULL,    -- Jensen-Shannon divergence between regimes
    user_id INTEGER,              -- NULL for a global drift
    start_ts BIGINT NOT NULL, end_ts BIGINT NOT NULL,
    start_idx BIGINT NOT NULL, end_idx BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    dataset VARCHAR NOT NULL,
    scenario VARCHAR NOT NULL,
    scenario_hash VARCHAR NOT NULL,
    data_fingerprint VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    checkpoint_hash VARCHAR NOT NULL,
    policy VARCHAR NOT NULL,      -- display name, e.g. 'reset'
    seed BIGINT NOT NULL,
    manifest VARCHAR NOT NULL,    -- JSON: every setting, versions, git revision
    status VARCHAR NOT NULL,      -- running | complete
    started TIMESTAMP NOT NULL,
    finished TIMESTAMP,
    n_events BIGINT NOT NULL,     -- events scored so far
    last_batch BIGINT NOT NULL,   -- last committed micro-batch id (-1 before the first)
    events_per_s DOUBLE
);
CREATE TABLE IF NOT EXISTS run_signals (
    run_id VARCHAR NOT NULL,
    batch_id BIGINT NOT NULL,
    signal VARCHAR NOT NULL,      -- a name of `streamsim.records.SIGNALS`
    value DOUBLE NOT NULL
);
"""
# the per-event, per-batch and alarm tables of a run: generated from the record dataclasses
RUN_SCHEMA = (
    records.table_ddl("run_events", records.EventRecords)
    + records.table_ddl("run_batches", records.BatchResult)
    + """CREATE TABLE IF NOT EXISTS run_alarms (
    run_id VARCHAR NOT NULL,
    detector VARCHAR NOT NULL,
    signal VARCHAR NOT NULL,
    idx BIGINT NOT NULL,
    ts BIGINT NOT NULL
);
"""
)
# label-free signals that older workspaces kept as `run_batches` columns: moved to `run_signals`
_LEGACY_SIGNAL_COLUMNS = ("delta_next_mean", "topk_entropy", "coverage", "rec_gini", "top1_entropy")

# The read interface: every module outside the store's own (this one and `streamsim.runs`)
# queries these table macros, never the base tables, so a schema change is made here once.
_SLICES = {  # macro -> (base table, key column): the table's rows of one dataset or one run
    "dataset_events": ("events", "dataset"),
    "dataset_items": ("items", "dataset"),
    "dataset_categories": ("categories", "dataset"),
    "dataset_regimes": ("event_regimes", "dataset"),  # a generator's regime of every event
    "run_events_of": ("run_events", "run_id"),
    "run_alarms_of": ("run_alarms", "run_id"),
    "run_signals_of": ("run_signals", "run_id"),
}
READ_INTERFACE = (
    "".join(
        f"CREATE OR REPLACE {{temp}} MACRO {macro}(k) AS TABLE"
        f" SELECT * EXCLUDE ({key}) FROM {table} WHERE {key} = k;\n"
        for macro, (table, key) in _SLICES.items()
    )
    + "CREATE OR REPLACE {temp} MACRO global_drifts(ds) AS TABLE SELECT * EXCLUDE (dataset,"
    " user_id) FROM drifts WHERE dataset = ds AND user_id IS NULL;\n"
    # one row per micro-batch: the `run_batches` columns and one column per known signal
    + "CREATE OR REPLACE {temp} MACRO run_batches_of(r) AS TABLE SELECT b.* EXCLUDE (run_id), "
    + ", ".join(
        f"(SELECT s.value FROM run_signals s WHERE s.run_id = r AND s.batch_id = b.batch_id"
        f" AND s.signal = {quote_literal(name)}) AS {quote_ident(name)}"
        for name in records.SIGNALS
    )
    + " FROM run_batches b WHERE b.run_id = r;\n"
)

EVENT_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("user_id", pa.int32()),
        ("item_id", pa.int32()),
        ("ts", pa.int64()),
        ("category", pa.int32()),
        ("rating", pa.float32()),
    ]
)


@dataclass(frozen=True, slots=True)
class Workspace:
    """The directory holding the DuckDB file, Parquet exports, checkpoints, runs and dashboards."""

    root: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> Workspace:
        """`path`, else ``$STREAMSIM_HOME``, else ``~/.streamsim``."""
        raw = path if path is not None else os.environ.get("STREAMSIM_HOME") or DEFAULT_HOME
        return cls(Path(raw).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "streamsim.duckdb"

    def subdir(self, name: str) -> Path:
        """`root/name` (``parquet``, ``checkpoints``, ``runs``, ``dashboards``), created on use."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def connect(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the workspace database (creating the directory and schema when writable)."""
        if self.root.exists() and not self.root.is_dir():
            msg = (
                f"{self.root}: not a directory; expected a workspace directory (--store,"
                " $STREAMSIM_HOME)"
            )
            raise StorageError(msg)
        if self.db_path.exists() and not self.db_path.is_file():
            msg = f"{self.db_path}: not a file; expected the workspace's DuckDB database file"
            raise StorageError(msg)
        if read_only and not self.db_path.exists():
            read_only = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"{self.root}: cannot open the workspace ({exc.strerror or exc}); expected a"
                " writable directory"
            )
            raise StorageError(msg) from None
        try:
            con = duckdb.connect(str(self.db_path), read_only=read_only)
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                first = str(exc).strip().splitlines()[0]
                msg = (
                    f"{self.db_path}: cannot open the store ({first}); expected a DuckDB"
                    " database written by streamsim"
                )
                raise StorageError(msg) from None
            holder = re.search(r"\(PID (\d+)\)", str(exc))
            who = f"process {holder.group(1)}" if holder else "another process"
            msg = (
                f"{self.db_path}: the workspace is in use by {who} (DuckDB allows one process "
                "per database file); wait for it to finish, or give this command its own "
                "workspace with `streamsim --store DIR ...`"
            )
            raise StorageError(msg) from None
        if not read_only:
            create_schema(con)
        else:
            con.execute(READ_INTERFACE.format(temp="TEMP"))
        return con


def fetch_one(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None
) -> tuple[Any, ...] | None:
    """The first row of a query, with the result fully drained (DuckDB 2 refuses further work on
    a connection whose last result was not read to the end)."""
    rows = con.execute(query, params or []).fetchall()
    return rows[0] if rows else None


def connect_memory() -> duckdb.DuckDBPyConnection:
    """An in-memory store with the schema (tests and throwaway computations)."""
    con = duckdb.connect(":memory:")
    create_schema(con)
    return con


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The tables (bringing an older workspace's up to date) and the read interface."""
    con.execute(SCHEMA)
    con.execute(RUN_SCHEMA)
    _migrate(con)
    con.execute(READ_INTERFACE.format(temp=""))


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the run tables of a workspace made by an older streamsim up to date: add the
    columns it lacks, move label-free signals from `run_batches` columns to `run_signals`."""
    for table, cls in (("run_events", records.EventRecords), ("run_batches", records.BatchResult)):
        present = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        for statement in records.missing_columns(table, cls, present):
            con.execute(statement)
        if table != "run_batches":
            continue
        for name in _LEGACY_SIGNAL_COLUMNS:
            if name in present:
                column = quote_ident(name)
                con.execute(
                    f"INSERT INTO run_signals SELECT run_id, batch_id, ?, {column}"
                    f" FROM run_batches WHERE {column} IS NOT NULL",
                    [name],
                )
                con.execute(f"ALTER TABLE run_batches DROP COLUMN {column}")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """One row of the ``datasets`` table."""

    name: str
    source: str
    format: str
    fingerprint: str
    created: datetime
    n_events: int
    n_users: int
    n_items: int
    t_min: int
    t_max: int
    has_category: bool
    has_rating: bool
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["created"] = self.created.isoformat()
        return out


def dataset_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("SELECT name FROM datasets ORDER BY name").fetchall()
    return [r[0] for r in rows]


def dataset_info(con: duckdb.DuckDBPyConnection, name: str) -> DatasetInfo:
    """The stored metadata of dataset `name`; `StorageError` listing the known names if absent."""
    row = fetch_one(
        con,
        "SELECT name, source, format, fingerprint, created, n_events, n_users, n_items, t_min,"
        " t_max, has_category, has_rating, params FROM datasets WHERE name = ?",
        [name],
    )
    if row is None:
        known = dataset_names(con)
        msg = f"unknown dataset {name!r}; the store has {known}"
        raise StorageError(msg)
    name_, source, fmt, fingerprint, created, n_ev, n_us, n_it, t0, t1, has_c, has_r, params = row
    return DatasetInfo(
        name=name_,
        source=source,
        format=fmt,
        fingerprint=fingerprint,
        created=created,
        n_events=n_ev,
        n_users=n_us,
        n_items=n_it,
        t_min=t0,
        t_max=t1,
        has_category=has_c,
        has_rating=has_r,
        params=json.loads(params),
    )


def has_dataset(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = fetch_one(con, "SELECT count(*) FROM datasets WHERE name = ?", [name])
    return bool(row and row[0])


DATASET_TABLES = ("events", "users", "items", "categories", "event_regimes", "drifts")


def delete_dataset(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Remove a dataset and everything keyed by it (call inside a transaction)."""
    for table in DATASET_TABLES:
        con.execute(f"DELETE FROM {table} WHERE dataset = ?", [name])
    con.execute("DELETE FROM datasets WHERE name = ?", [name])


def add_known_changes(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    changes: Sequence[tuple[str, int, int]],
    *,
    users: Sequence[int] = (),
) -> int:
    """Store known change points ``(kind, start_ts, end_ts)`` of a dataset as global drifts
    (``drift_type = 'known'``, magnitude unknown), in one transaction; the number stored.
    Detector scoring, its baselines and the drift-aligned segments then use them as they use a
    generator's ground truth. With `users` (dense ids), a change concerns those users only: its
    global row's ``scope`` is their share of the dataset's users, and each of them gets a
    per-user row (``user_id`` set), as a generator's per-user regime switches have."""
    info = dataset_info(con, dataset)  # StorageError for an unknown dataset
    scope = len(users) / max(info.n_users, 1) if users else 1.0
    con.execute("BEGIN TRANSACTION")
    try:
        row = fetch_one(con, "SELECT coalesce(max(drift_id) + 1, 0) FROM drifts WHERE dataset = ?",
                        [dataset])  # fmt: skip
        assert row is not None
        for k, (kind, start_ts, end_ts) in enumerate(changes):
            start_idx, end_idx = (idx_at_time(con, dataset, t) for t in (start_ts, end_ts))
            for user in (None, *users):
                con.execute(
                    "INSERT INTO drifts (dataset, drift_id, kind, drift_type, scope, magnitude,"
                    " user_id, start_ts, end_ts, start_idx, end_idx)"
                    " VALUES (?, ?, ?, 'known', ?, 'NaN'::DOUBLE, ?, ?, ?, ?, ?)",
                    [dataset, int(row[0]) + k, kind, scope, user, start_ts, end_ts, start_idx,
                     end_idx],
                )  # fmt: skip
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(changes)


def known_user_changes(con: duckdb.DuckDBPyConnection, dataset: str) -> list[tuple[int, int]]:
    """``(user_id, start_ts)`` of every per-user change a user added (`add_known_changes` with
    users), oldest first."""
    return [
        (int(u), int(t))
        for u, t in con.execute(
            "SELECT user_id, start_ts FROM drifts WHERE dataset = ? AND drift_type = 'known'"
            " AND user_id IS NOT NULL ORDER BY start_ts, user_id",
            [dataset],
        ).fetchall()
    ]


def user_ids(con: duckdb.DuckDBPyConnection, dataset: str, raws: Sequence[str]) -> dict[str, int]:
    """The dense ids of the raw user ids `raws` that the dataset has (absent ones are left out)."""
    rows = con.execute(
        "SELECT raw, user_id FROM users WHERE dataset = ? AND list_contains(?, raw)",
        [dataset, list(raws)],
    ).fetchall()
    return {str(r): int(u) for r, u in rows}


def category_users(
    con: duckdb.DuckDBPyConnection, dataset: str, category: str, *, before_ts: int
) -> list[int]:
    """The users with an event of category `category` (its raw name) before `before_ts`;
    `StorageError` naming some categories when the dataset has no such category."""
    found = fetch_one(
        con, "SELECT category FROM categories WHERE dataset = ? AND raw = ?", [dataset, category]
    )
    if found is None:
        names = [r[0] for r in con.execute(
            "SELECT raw FROM categories WHERE dataset = ? ORDER BY category LIMIT 8", [dataset]
        ).fetchall()]  # fmt: skip
        msg = (
            f"--scope {category!r}: dataset {dataset!r} has no such category (nor is it a file);"
            f" expected a users CSV or a category such as {names}"
        )
        raise StorageError(msg)
    return [
        int(u)
        for (u,) in con.execute(
            "SELECT DISTINCT user_id FROM events WHERE dataset = ? AND category = ? AND ts < ?"
            " ORDER BY user_id",
            [dataset, int(found[0]), before_ts],
        ).fetchall()
    ]


def clear_known_changes(con: duckdb.DuckDBPyConnection, dataset: str) -> int:
    """Remove the change points added to a dataset (a generator's ground truth stays)."""
    dataset_info(con, dataset)
    row = fetch_one(
        con,
        "SELECT count(*) FROM drifts WHERE dataset = ? AND drift_type = 'known'"
        " AND user_id IS NULL",
        [dataset],
    )
    con.execute("DELETE FROM drifts WHERE dataset = ? AND drift_type = 'known'", [dataset])
    return int(row[0]) if row is not None else 0


def write_dataset(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    events: pa.Table,
    users: pa.Table,
    items: pa.Table,
    categories: pa.Table | None = None,
    regimes: pa.Table | None = None,
    drifts: pa.Table | None = None,
    source: str,
    format: str,
    params: dict[str, Any] | None = None,
    replace: bool = False,
) -> DatasetInfo:
    """Store a fully prepared dataset in one transaction and return its metadata.

    Parameters
    ----------
    events
        Columns of `EVENT_SCHEMA` (``idx`` = replay order ``0..n-1``, dense ids). ``category``
        and ``rating`` may be all-null.
    users, items, categories
        Mapping tables: ``(user_id, raw)``, ``(item_id, raw, category, title, genres)`` (the
        last three may be null), ``(category, raw)``.
    regimes, drifts
        Synthetic ground truth: ``(idx, regime)`` and the ``drifts`` table columns (minus
        ``dataset``).
    replace
        Overwrite an existing dataset of that name; otherwise a duplicate is an error.
    """
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        msg = f"dataset name must be letters, digits, '-', '_' or '.', got {name!r}"
        raise StorageError(msg)
    events = _conform_events(events)
    if events.num_rows == 0:
        msg = f"dataset {name!r} has no events"
        raise StorageError(msg)
    con.execute("BEGIN TRANSACTION")
    try:
        if has_dataset(con, name):
            if not replace:
                msg = f"dataset {name!r} already exists; pass --replace to overwrite it"
                raise StorageError(msg)
            delete_dataset(con, name)
        _insert(con, "events", name, events)
        _insert(con, "users", name, users)
        _insert(con, "items", name, items)
        if categories is not None:
            _insert(con, "categories", name, categories)
        if regimes is not None:
            _insert(con, "event_regimes", name, regimes)
        if drifts is not None and drifts.num_rows:
            _insert(con, "drifts", name, drifts)
        # from the Arrow table, not the database: `iter_events` reads on a cursor, which does
        # not see this uncommitted transaction (it would hash zero events)
        fingerprint = _digest(_blocks([events.sort_by("idx")]))
        stats = fetch_one(
            con,
            # ids are dense from 0 (users) and 1 (items): the largest id sizes the tables, also
            # when a catalogue item or a generated user has no event (a small synthetic stream)
            "SELECT count(*), max(user_id) + 1, max(item_id), min(ts), max(ts),"
            " count(category) > 0, count(rating) > 0 FROM events WHERE dataset = ?",
            [name],
        )
        assert stats is not None
        con.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                name,
                source,
                format,
                fingerprint,
                datetime.now(timezone.utc).replace(tzinfo=None),
                *stats,
                json.dumps(params or {}, sort_keys=True, default=str),
            ],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return dataset_info(con, name)


def _conform_events(events: pa.Table) -> pa.Table:
    missing = [f.name for f in EVENT_SCHEMA if f.name not in events.column_names]
    for col in missing:
        if col in ("category", "rating"):
            nulls = pa.nulls(events.num_rows, EVENT_SCHEMA.field(col).type)
            events = events.append_column(col, nulls)
    missing = [f.name for f in EVENT_SCHEMA if f.name not in events.column_names]
    if missing:
        msg = f"events table lacks columns {missing}; expected {EVENT_SCHEMA.names}"
        raise StorageError(msg)
    return events.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)


def _insert(con: duckdb.DuckDBPyConnection, table: str, name: str, data: pa.Table) -> None:
    """Insert an Arrow table into `table`, adding the ``dataset`` column."""
    cols = ", ".join(quote_ident(c) for c in data.column_names)
    con.register("_incoming", data)
    try:
        query = f"INSERT INTO {table} (dataset, {cols}) SELECT ?, {cols} FROM _incoming"
        con.execute(query, [name])
    finally:
        con.unregister("_incoming")


_FINGERPRINT_BLOCK = 1 << 17


def events_fingerprint(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """sha256 over (user, item, ts, category, rating) of every event, in replay order.

    The events are hashed column by column in blocks of exactly `_FINGERPRINT_BLOCK` rows, so the
    value does not depend on how DuckDB or Arrow happen to chunk the data.
    """
    return _digest(_blocks(iter_events(con, name, batch_size=_FINGERPRINT_BLOCK)))


def _blocks(parts: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.Table]:
    """Re-slice batches into tables of exactly `_FINGERPRINT_BLOCK` rows (the last one shorter)."""
    pending: list[pa.Table] = []
    held = 0
    for part in parts:
        table = part if isinstance(part, pa.Table) else pa.Table.from_batches([part])
        pending.append(table)
        held += table.num_rows
        while held >= _FINGERPRINT_BLOCK:
            joined = pa.concat_tables(pending)
            yield joined.slice(0, _FINGERPRINT_BLOCK)
            rest = joined.slice(_FINGERPRINT_BLOCK)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def _digest(blocks: Iterable[pa.Table]) -> str:
    digest = hashlib.sha256()
    for block in blocks:
        for col in ("user_id", "item_id", "ts", "category", "rating"):
            arr = block.column(col).cast(EVENT_SCHEMA.field(col).type)
            fill = -1 if col != "rating" else np.nan
            values = arr.fill_null(fill).to_numpy()
            digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def iter_events(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    start_idx: int = 0,
    stop_idx: int | None = None,
    batch_size: int = 65536,
    tie_seed: int | None = None,
    skip: int = 0,
) -> Iterator[pa.RecordBatch]:
    """Events ``start_idx <= idx < stop_idx`` of a dataset in replay order, as Arrow batches.

    Memory stays bounded by `batch_size`: the rows are streamed from DuckDB, never collected into
    a Python list. The reader runs on a cursor of `con`, so other queries may run meanwhile.

    `tie_seed` (a sanity check of the tie order): events with equal timestamps come in a seeded
    random order instead of the source-row order (``idx``); timestamps stay non-decreasing.
    `skip` leaves out the first rows of that order (resuming a replay).
    """
    stop = stop_idx if stop_idx is not None else np.iinfo(np.int64).max
    order = "idx" if tie_seed is None else "ts, hash(idx, $seed), idx"
    params: dict[str, object] = {"name": name, "lo": int(start_idx), "hi": int(stop)}
    params["skip"] = int(skip)
    if tie_seed is not None:
        params["seed"] = int(tie_seed)
    cursor = con.cursor()
    try:
        reader = cursor.sql(
            "SELECT idx, user_id, item_id, ts, category, rating FROM events"
            f" WHERE dataset = $name AND idx >= $lo AND idx < $hi ORDER BY {order} OFFSET $skip",
            params=params,
        ).to_arrow_reader(batch_size)
        for batch in reader:
            yield batch.cast(EVENT_SCHEMA) if batch.schema != EVENT_SCHEMA else batch
    finally:
        cursor.close()


def read_events(
    con: duckdb.DuckDBPyConnection, name: str, *, start_idx: int = 0, stop_idx: int | None = None
) -> pa.Table:
    """All events of a range as one Arrow table (for ranges known to fit in memory)."""
    batches = list(iter_events(con, name, start_idx=start_idx, stop_idx=stop_idx))
    return pa.Table.from_batches(batches, schema=EVENT_SCHEMA)


def idx_at_time(con: duckdb.DuckDBPyConnection, name: str, ts: int) -> int:
    """The replay index of the first event with timestamp >= `ts` (n_events if none)."""
    row = fetch_one(
        con,
        "SELECT coalesce(min(idx), (SELECT count(*) FROM events WHERE dataset = ?))"
        " FROM events WHERE dataset = ? AND ts >= ?",
        [name, name, ts],
    )
    assert row is not None
    return int(row[0])


def global_drift_starts(con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[int, ...]:
    """Replay indices where the dataset's ground-truth global drifts start (none for real logs
    without known change points)."""
    rows = con.execute(
        "SELECT DISTINCT start_idx FROM drifts WHERE dataset = ? AND user_id IS NULL"
        " ORDER BY start_idx",
        [dataset],
    ).fetchall()
    return tuple(int(r[0]) for r in rows)


# ------------------------------------------------------------------------------------------------
# SQL quoting, opening a workspace with user errors reported as `StorageError`, and the dataset
# queries of the `datasets` commands (the command layer runs no SQL of its own).


def check_dataset_name(name: str) -> None:
    """`StorageError` unless `name` is letters, digits, '-', '_' or '.' (the `write_dataset` rule).

    Lets a command refuse a bad name before it parses a large file.
    """
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        msg = f"dataset name must be letters, digits, '-', '_' or '.', got {name!r}"
        raise StorageError(msg)


def open_workspace(ws: Workspace, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """`Workspace.connect`: a workspace path that cannot be used (a ``--store`` that is a file, a
    directory that cannot be created, a database file DuckDB cannot open) is a `StorageError`."""
    return ws.connect(read_only=read_only)


def top_categories(con: duckdb.DuckDBPyConnection, name: str, *, top: int) -> list[tuple[str, int]]:
    """The `top` categories of a dataset by event count: ``(raw name, events)``, most first."""
    rows = con.execute(
        "SELECT coalesce(c.raw, CAST(e.category AS VARCHAR)), count(*) AS n FROM events e"
        " LEFT JOIN categories c ON c.dataset = e.dataset AND c.category = e.category"
        " WHERE e.dataset = ? AND e.category IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?",
        [name, top],
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


def count_categories(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = fetch_one(con, "SELECT count(*) FROM categories WHERE dataset = ?", [name])
    return int(row[0]) if row else 0


def drop_dataset(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Remove dataset `name` and its tables in one transaction; `StorageError` if it is absent."""
    dataset_info(con, name)  # StorageError listing the known names if absent
    con.execute("BEGIN TRANSACTION")
    try:
        delete_dataset(con, name)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
