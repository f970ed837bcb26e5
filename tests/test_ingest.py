"""Ingest formats on small generated files, replay order, and bad input leaving the store alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamsim.errors import IngestError, StorageError
from streamsim.ingest import ingest
from streamsim.store import Workspace, connect_memory


def snapshot(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], ...]:
    """Full contents of the dataset tables (to prove a failed ingest changed nothing)."""
    return tuple(
        con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("datasets", "events", "users", "items", "categories")
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = connect_memory()
    return c


CSV = "user,item,ts,cat\nu1,a,100,x\nu2,b,50,y\nu1,b,100,y\nu3,c,50,x\n"


def test_generic_csv_replay_order_ties_keep_row_order(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write(tmp_path / "log.csv", CSV)
    info = ingest(con, path, name="g", user_col="user", item_col="item", time_col="ts",
                  category_col="cat")  # fmt: skip
    assert (info.n_events, info.n_users, info.n_items, info.t_min, info.t_max) == (4, 3, 3, 50, 100)
    rows = con.execute(
        "SELECT u.raw, i.raw, e.ts, c.raw FROM events e"
        " JOIN users u ON u.dataset = e.dataset AND u.user_id = e.user_id"
        " JOIN items i ON i.dataset = e.dataset AND i.item_id = e.item_id"
        " JOIN categories c ON c.dataset = e.dataset AND c.category = e.category"
        " WHERE e.dataset = 'g' ORDER BY e.idx"
    ).fetchall()
    # ts ascending; equal timestamps keep the file's row order
    assert rows == [("u2", "b", 50, "y"), ("u3", "c", 50, "x"), ("u1", "a", 100, "x"),
                    ("u1", "b", 100, "y")]  # fmt: skip
    ids = con.execute(
        "SELECT user_id, item_id FROM events WHERE dataset = 'g' ORDER BY idx"
    ).fetchall()
    # users 0.. and items 1.. by first appearance in replay order
    assert ids == [(0, 1), (1, 2), (2, 3), (2, 1)]


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        (["1000000000000", "1000000001500"], "auto", (1_000_000_000, 1_000_000_001)),
        (["1000000000", "1000000002"], "auto", (1_000_000_000, 1_000_000_002)),
        (["2001-09-09", "2001-09-09 01:46:41"], "auto", (999_993_600, 1_000_000_001)),
        (["5", "7"], "ms", (0, 0)),
    ],
)
def test_time_units(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    values: list[str],
    unit: str,
    expected: tuple[int, int],
) -> None:
    text = "u,i,t\n" + "".join(f"a,{k},{v}\n" for k, v in enumerate(values))
    path = write(tmp_path / "t.csv", text)
    info = ingest(con, path, name="t", user_col="u", item_col="i", time_col="t", time_unit=unit)
    assert (info.t_min, info.t_max) == expected


def test_parquet_generic(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    table = pa.table(
        {"uid": [1, 2, 1], "iid": [10, 10, 11], "when": [3, 2, 1], "stars": [1.0, 2.0, 3.0]}
    )
    pq.write_table(table, tmp_path / "log.parquet")
    info = ingest(con, tmp_path / "log.parquet", name="p", user_col="uid", item_col="iid",
                  time_col="when", rating_col="stars")  # fmt: skip
    assert info.format == "parquet"
    assert (info.n_events, info.n_users, info.n_items, info.has_rating) == (3, 2, 2, True)
    ratings = con.execute("SELECT rating FROM events WHERE dataset = 'p' ORDER BY idx").fetchall()
    assert ratings == [(3.0,), (2.0,), (1.0,)]


def test_ml1m_format(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    root = tmp_path / "ml-1m"
    root.mkdir()
    write(
        root / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    write(
        root / "movies.dat",
        "1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's\n",
    )
    info = ingest(con, root, name="m")
    assert (info.format, info.n_events, info.n_users, info.n_items) == ("ml-1m", 3, 2, 2)
    assert (info.t_min, info.t_max, info.has_category, info.has_rating) == (
        978298413,
        978302109,
        True,
        True,
    )
    genres = con.execute(
        "SELECT raw, genres FROM items WHERE dataset = 'm' ORDER BY item_id"
    ).fetchall()
    assert genres == [("1193", "Drama"), ("661", "Animation|Children's")]


def test_ml1m_bad_field_count(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    root = tmp_path / "ml-1m"
    root.mkdir()
    write(root / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(IngestError, match=r"ratings.dat: line 2: 3 fields; expected UserID::"):
        ingest(con, root, name="m")


def test_recbole_inter_and_item(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "1\t5\t3\t881250949\n2\t6\t4\t881250950\n")  # fmt: skip
    write(tmp_path / "x.item", "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
          "5\tHeat\tAction Crime\n6\tUp\tAnimation\n")  # fmt: skip
    info = ingest(con, tmp_path / "x.inter", name="r")
    assert (info.format, info.n_events, info.has_category) == ("recbole", 2, True)
    rows = con.execute(
        "SELECT raw, title, genres FROM items WHERE dataset='r' ORDER BY item_id"
    ).fetchall()
    assert rows == [("5", "Heat", "Action|Crime"), ("6", "Up", "Animation")]


def test_user_lines_pair(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    write(tmp_path / "X_item_org_rank.txt", "1 7 8 9\n2 8 7\n")
    write(tmp_path / "X_time_org_rank.txt", "1 10 20 30\n2 10 15\n")
    info = ingest(con, tmp_path / "X_item_org_rank.txt", name="l")
    assert (info.format, info.n_events, info.n_users, info.n_items) == ("user-lines", 5, 2, 3)
    rows = con.execute(
        "SELECT user_id, item_id, ts FROM events WHERE dataset='l' ORDER BY idx"
    ).fetchall()
    assert rows == [(0, 1, 10), (1, 2, 10), (1, 1, 15), (0, 2, 20), (0, 3, 30)]


def test_user_lines_misaligned(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    write(tmp_path / "X_item_org_rank.txt", "1 7 8 9\n2 8 7\n")
    write(tmp_path / "X_time_org_rank.txt", "1 10 20 30\n2 10\n")
    with pytest.raises(
        IngestError, match=r"X_time_org_rank.txt: line 2: user '2' with 1 timestamps"
    ):
        ingest(con, tmp_path, name="l")


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def seeded(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    ingest(con, write(tmp_path / "seed.csv", CSV), name="seed", user_col="user",
           item_col="item", time_col="ts")  # fmt: skip
    return con


def test_missing_column(seeded: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "a.csv", CSV)
    with pytest.raises(IngestError, match=r"a.csv: missing column 'time'; the file has columns"):
        ingest(seeded, path, name="x", user_col="user", item_col="item", time_col="time")
    assert snapshot(seeded) == before


def test_unparsable_timestamp_row(seeded: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "b.csv", "user,item,ts\nu,a,5\nu,b,6\nu,c,yesterday\nu,d,7\n")
    with pytest.raises(
        IngestError, match=r"b.csv: line 4, column 'ts': unparsable timestamp 'yesterday'"
    ):
        ingest(seeded, path, name="x", user_col="user", item_col="item", time_col="ts")
    assert snapshot(seeded) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e30"])
def test_timestamps_no_integer_holds_name_their_line(
    seeded: duckdb.DuckDBPyConnection, tmp_path: Path, value: str
) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "n.csv", f"user,item,ts\nu,a,5\nu,b,{value}\nu,c,7\n")
    with pytest.raises(IngestError, match=r"n.csv: line 3, column 'ts': unparsable timestamp"):
        ingest(seeded, path, name="x", user_col="user", item_col="item", time_col="ts")
    assert snapshot(seeded) == before


def test_bad_iso_date_row(seeded: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "c.csv", "user,item,ts\nu,a,2020-01-01\nu,b,2020-13-45\n")
    with pytest.raises(IngestError, match=r"line 3, column 'ts': .*expected an ISO date"):
        ingest(seeded, path, name="x", user_col="user", item_col="item", time_col="ts")
    assert snapshot(seeded) == before


def test_empty_file(seeded: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "e.csv", "")
    with pytest.raises(IngestError, match=r"e.csv: empty file; expected interaction rows"):
        ingest(seeded, path, name="x", user_col="user", item_col="item", time_col="ts")
    header_only = write(tmp_path / "h.csv", "user,item,ts\n")
    with pytest.raises(IngestError, match=r"h.csv: empty file"):
        ingest(seeded, header_only, name="x", user_col="user", item_col="item", time_col="ts")
    assert snapshot(seeded) == before


def test_unknown_format(seeded: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "f.csv", CSV)
    with pytest.raises(IngestError, match=r"unknown format 'xml'; expected one of ml-100k, ml-1m"):
        ingest(seeded, path, name="x", format="xml")
    with pytest.raises(IngestError, match=r"cannot detect the format; pass --format"):
        ingest(seeded, write(tmp_path / "f.bin", "x"), name="x")
    assert snapshot(seeded) == before


def test_duplicate_name(seeded: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    before = snapshot(seeded)
    path = write(tmp_path / "d.csv", "user,item,ts\nz,q,1\n")
    with pytest.raises(StorageError, match=r"dataset 'seed' already exists; pass --replace"):
        ingest(seeded, path, name="seed", user_col="user", item_col="item", time_col="ts")
    assert snapshot(seeded) == before
    info = ingest(seeded, path, name="seed", user_col="user", item_col="item", time_col="ts",
                  replace=True)  # fmt: skip
    assert info.n_events == 1


def test_failure_near_end_of_large_file_leaves_store_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    con = ws.connect()
    ingest(con, write(tmp_path / "seed.csv", CSV), name="seed", user_col="user",
           item_col="item", time_col="ts")  # fmt: skip
    before = snapshot(con)
    n = 200_000
    big = tmp_path / "big.csv"
    duckdb.connect().execute(
        f"COPY (SELECT i % 977 AS user, i % 5003 AS item,"
        f" CASE WHEN i = {n - 17} THEN 'not-a-time' ELSE CAST(1000000 + i AS VARCHAR) END AS ts"
        f" FROM range({n}) t(i)) TO '{big}' (HEADER, DELIMITER ',')"
    )
    with pytest.raises(IngestError, match=rf"big.csv: line {n - 17 + 2}, column 'ts'"):
        ingest(con, big, name="big", user_col="user", item_col="item", time_col="ts")
    assert snapshot(con) == before
    con.close()
    reopened = ws.connect()
    assert snapshot(reopened) == before
    # a failure inside the write transaction, after the events went in, rolls everything back
    from streamsim import store as store_module

    real_insert = store_module._insert

    def failing_insert(con_: duckdb.DuckDBPyConnection, table: str, *args: object) -> None:
        if table == "items":
            msg = "disk full (injected)"
            raise OSError(msg)
        real_insert(con_, table, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "_insert", failing_insert)
    good = write(tmp_path / "good.csv", CSV)
    with pytest.raises(OSError, match="injected"):
        ingest(reopened, good, name="late", user_col="user", item_col="item", time_col="ts")
    assert snapshot(reopened) == before


# ----------------------------------------------------------------------------- CLI


def test_cli_ingest_list_show_export_import_delete(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from streamsim.cli import app

    runner = CliRunner()
    store = str(tmp_path / "ws")
    log = write(tmp_path / "log.csv", CSV)
    cols = ["--user-col", "user", "--item-col", "item", "--time-col", "ts", "--category-col", "cat"]
    res = runner.invoke(app, ["--store", store, "ingest", str(log), "--name", "g", *cols])
    assert res.exit_code == 0, res.output
    assert "ingested g: 4 events, 3 users, 3 items" in res.output
    res = runner.invoke(app, ["--store", store, "ingest", str(log), "--name", "g", *cols])
    assert res.exit_code == 1
    assert "error: dataset 'g' already exists; pass --replace to overwrite it" in res.output
    res = runner.invoke(app, ["--store", store, "datasets", "list", "--json"])
    assert res.exit_code == 0
    listed = json.loads(res.output)
    assert [(d["name"], d["n_events"]) for d in listed] == [("g", 4)]
    res = runner.invoke(app, ["--store", store, "datasets", "list"])
    assert res.exit_code == 0
    assert "g" in res.output
    res = runner.invoke(app, ["--store", store, "datasets", "show", "g", "--json"])
    shown = json.loads(res.output)
    assert shown["density"] == pytest.approx(4 / 9)
    assert shown["top_categories"] == [
        {"category": "x", "events": 2},
        {"category": "y", "events": 2},
    ]
    assert (shown["first"], shown["last"]) == ("1970-01-01 00:00:50", "1970-01-01 00:01:40")
    res = runner.invoke(app, ["--store", store, "datasets", "show", "g"])
    assert res.exit_code == 0
    assert "density" in res.output
    res = runner.invoke(app, ["--store", store, "datasets", "export", "g", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["--store", store, "datasets", "import", str(tmp_path / "x"), "--name", "g2"]
    )
    assert res.exit_code == 0, res.output
    assert f"fingerprint {listed[0]['fingerprint'][:12]}" in res.output
    res = runner.invoke(app, ["--store", store, "datasets", "delete", "g"])
    assert res.exit_code == 0
    res = runner.invoke(app, ["--store", store, "datasets", "show", "g"])
    assert res.exit_code == 1
    assert "error: unknown dataset 'g'; the store has ['g2']" in res.output
    bad = write(tmp_path / "bad.csv", "user,item,ts\nu,a,1\nu,b,oops\n")
    res = runner.invoke(app, ["--store", store, "ingest", str(bad), "--name", "b", *cols[:6]])
    assert res.exit_code == 1
    assert "error: " in res.output
    assert "bad.csv: line 3, column 'ts': unparsable timestamp 'oops'" in res.output
    res = runner.invoke(app, ["--store", store, "ingest", str(bad), "--name", "b", "--format", "x"])
    assert res.exit_code == 1
    assert "unknown format 'x'" in res.output
