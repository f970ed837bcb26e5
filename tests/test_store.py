"""Event store: Parquet round trip keeps the fingerprint, bounded batches, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamsim.errors import IngestError, StorageError
from streamsim.ingest import ingest
from streamsim.parquet_io import export_dataset, import_dataset
from streamsim.store import (
    Workspace,
    connect_memory,
    dataset_info,
    events_fingerprint,
    iter_events,
    write_dataset,
)
from tests.conftest import shared_dataset


def _synthetic(con: object, name: str = "syn") -> None:
    n = 1000
    events = pa.table(
        {
            "idx": list(range(n)),
            "user_id": [i % 7 for i in range(n)],
            "item_id": [1 + i % 13 for i in range(n)],
            "ts": [10 * i for i in range(n)],
            "category": [i % 3 for i in range(n)],
            "rating": [None] * n,
        }
    )
    write_dataset(
        con,  # type: ignore[arg-type]
        name,
        events=events,
        users=pa.table({"user_id": list(range(7)), "raw": [f"u{i}" for i in range(7)]}),
        items=pa.table(
            {
                "item_id": list(range(1, 14)),
                "raw": [f"i{i}" for i in range(1, 14)],
                "category": [i % 3 for i in range(1, 14)],
                "title": [None] * 13,
                "genres": [None] * 13,
            }
        ),
        categories=pa.table({"category": [0, 1, 2], "raw": ["a", "b", "c"]}),
        regimes=pa.table({"idx": list(range(n)), "regime": [int(i >= 500) for i in range(n)]}),
        drifts=pa.table(
            {
                "drift_id": [0],
                "kind": ["sudden"],
                "drift_type": ["real"],
                "scope": [1.0],
                "magnitude": [0.4],
                "user_id": pa.array([None], pa.int32()),
                "start_ts": [5000],
                "end_ts": [5000],
                "start_idx": [500],
                "end_idx": [500],
            }
        ),
        source="synthetic",
        format="test",
        params={"seed": 1},
    )


def _contents(con: object, name: str) -> list[list[tuple[object, ...]]]:
    out = []
    for table, order in (
        ("events", "idx"),
        ("users", "user_id"),
        ("items", "item_id"),
        ("categories", "category"),
        ("event_regimes", "idx"),
        ("drifts", "drift_id"),
    ):
        rows = con.execute(  # type: ignore[attr-defined]
            f"SELECT * EXCLUDE (dataset) FROM {table} WHERE dataset = ? ORDER BY {order}", [name]
        ).fetchall()
        out.append(rows)
    return out


def test_parquet_round_trip_synthetic(tmp_path: Path) -> None:
    con = connect_memory()
    _synthetic(con)
    export_dataset(con, "syn", tmp_path / "exp")
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "categories.parquet",
        "drifts.parquet",
        "events.parquet",
        "items.parquet",
        "meta.json",
        "regimes.parquet",
        "users.parquet",
    ]
    other = Workspace.resolve(tmp_path / "ws2").connect()
    info = import_dataset(other, tmp_path / "exp")
    original = dataset_info(con, "syn")
    assert info.fingerprint == original.fingerprint
    assert (info.n_events, info.n_users, info.n_items, info.t_min, info.t_max) == (
        original.n_events,
        original.n_users,
        original.n_items,
        original.t_min,
        original.t_max,
    )
    assert info.params == {"seed": 1}
    assert _contents(other, "syn") == _contents(con, "syn")


def test_parquet_round_trip_real(tmp_path: Path) -> None:
    con = connect_memory()
    ingest(con, shared_dataset("ml-100k"), name="ml")
    export_dataset(con, "ml", tmp_path / "exp")
    other = connect_memory()
    info = import_dataset(other, tmp_path / "exp", name="ml-copy")
    assert info.fingerprint == dataset_info(con, "ml").fingerprint
    assert _contents(other, "ml-copy") == _contents(con, "ml")


def test_import_refuses_altered_files_and_duplicates(tmp_path: Path) -> None:
    con = connect_memory()
    _synthetic(con)
    exp = export_dataset(con, "syn", tmp_path / "exp")
    with pytest.raises(StorageError, match="dataset 'syn' already exists"):
        import_dataset(con, exp)
    before = _contents(con, "syn")
    events = pq.read_table(exp / "events.parquet")
    pq.write_table(events.slice(0, 999), exp / "events.parquet")
    with pytest.raises(IngestError, match=r"events.parquet: events fingerprint .* from meta.json"):
        import_dataset(con, exp, replace=True)
    assert _contents(con, "syn") == before
    meta = json.loads((exp / "meta.json").read_text())
    meta["format_version"] = 99
    (exp / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IngestError, match=r"meta.json: format_version 99; expected 1"):
        import_dataset(con, exp, name="other")
    with pytest.raises(IngestError, match=r"meta.json: file not found"):
        import_dataset(con, tmp_path / "nowhere")


def test_iter_events_batches_are_bounded() -> None:
    con = connect_memory()
    _synthetic(con)
    sizes = [b.num_rows for b in iter_events(con, "syn", batch_size=128)]
    assert sum(sizes) == 1000
    assert max(sizes) <= 128
    first = next(iter_events(con, "syn", start_idx=990, batch_size=4))
    assert first.column("idx").to_pylist() == [990, 991, 992, 993]


def test_fingerprint_hashes_the_events() -> None:
    con = connect_memory()
    _synthetic(con, "a")
    _synthetic(con, "b")
    a, b = dataset_info(con, "a"), dataset_info(con, "b")
    assert a.fingerprint == b.fingerprint == events_fingerprint(con, "a")
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256(b"")
    assert a.fingerprint != empty
    con.execute("UPDATE events SET ts = ts + 1 WHERE dataset = 'b' AND idx = 999")
    assert events_fingerprint(con, "b") != a.fingerprint


# `run_batches` as workspaces made before the label-free signals got their own table had it
OLD_RUN_BATCHES = """
CREATE TABLE run_batches (
    run_id VARCHAR NOT NULL, batch_id BIGINT NOT NULL,
    first_idx BIGINT NOT NULL, last_idx BIGINT NOT NULL, n_events INTEGER NOT NULL,
    t_start BIGINT NOT NULL, t_end BIGINT NOT NULL,
    tta_loss_before DOUBLE, tta_loss_after DOUBLE, param_distance DOUBLE,
    backward_passes INTEGER NOT NULL, filtered_share DOUBLE, delta_next_mean DOUBLE,
    topk_entropy DOUBLE, coverage DOUBLE,
    time_adapt DOUBLE NOT NULL, time_score DOUBLE NOT NULL,
    time_reveal DOUBLE NOT NULL, time_detect DOUBLE NOT NULL
);
INSERT INTO run_batches VALUES
    ('r', 0, 0, 9, 10, 0, 9, 2.0, 1.9, 0.1, 1, NULL, 3.5, 0.7, 0.05, 0.1, 0.1, 0.1, 0.1),
    ('r', 1, 10, 19, 10, 10, 19, NULL, NULL, 0.0, 0, NULL, NULL, 0.6, 0.04, 0.1, 0.1, 0.1, 0.1);
"""


def test_opening_an_older_workspace_adds_the_new_columns_and_moves_the_signals(
    tmp_path: Path,
) -> None:
    import duckdb

    from streamsim.records import BatchResult, columns
    from streamsim.store import Workspace

    ws = Workspace.resolve(tmp_path / "old")
    ws.root.mkdir(parents=True)
    old = duckdb.connect(str(ws.db_path))
    old.execute(OLD_RUN_BATCHES)
    old.close()
    con = ws.connect()
    cols = {r[0] for r in con.execute("DESCRIBE run_batches").fetchall()}
    assert cols == {"run_id"} | {name for name, *_ in columns(BatchResult)}
    signals = con.execute(
        "SELECT batch_id, signal, value FROM run_signals ORDER BY batch_id, signal"
    ).fetchall()
    assert signals == [
        (0, "coverage", 0.05), (0, "delta_next_mean", 3.5), (0, "topk_entropy", 0.7),
        (1, "coverage", 0.04), (1, "topk_entropy", 0.6),
    ]  # fmt: skip
    # the read interface puts them back beside the batch columns
    row = con.execute(
        "SELECT tta_loss_before, delta_next_mean, coverage FROM run_batches_of('r')"
        " ORDER BY batch_id"
    ).fetchall()
    assert row == [(2.0, 3.5, 0.05), (None, None, 0.04)]
    con.close()
    assert ws.connect().execute("SELECT count(*) FROM run_signals").fetchall() == [(5,)]


def test_ids_without_events_still_size_the_tables() -> None:
    """A generated stream can leave catalogue items (or users) without an event: the largest
    dense id, not the number of distinct ids, sizes what is indexed by id."""
    from streamsim.history import HistoryBuffer
    from tests.support.toy import toy_events

    events, users, items = toy_events(n_events=60, n_users=6, n_items=20)
    keep = pa.compute.and_(
        pa.compute.not_equal(events["item_id"], 7), pa.compute.not_equal(events["user_id"], 2)
    )
    sparse = events.filter(keep)
    sparse = sparse.set_column(0, "idx", pa.array(range(sparse.num_rows), pa.int64()))
    con = connect_memory()
    info = write_dataset(
        con, "sparse", events=sparse, users=users, items=items, source="test", format="toy"
    )
    assert info.n_items == max(sparse["item_id"].to_pylist())
    assert info.n_users == max(sparse["user_id"].to_pylist()) + 1
    history = HistoryBuffer(n_users=info.n_users, n_items=info.n_items, max_len=4)
    for e in iter_events(con, "sparse"):  # every event's ids fit the tables
        for u, i, t in zip(e["user_id"].to_numpy(), e["item_id"].to_numpy(), e["ts"].to_numpy()):
            history.append(int(u), int(i), int(t))
