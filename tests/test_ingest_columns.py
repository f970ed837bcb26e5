"""A log with an ordinary header ingests without column flags; what was read is reported."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamsim.errors import IngestError
from streamsim.ingest import ingest
from streamsim.store import connect_memory
from tests.ingest_support import assert_one_error_line, run_cli, store_snapshot


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_plain_user_item_timestamp_csv_needs_no_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp\n7,a,1700000000\n8,b,1700000060\n"
    )
    code, out, err = run_cli(
        ["--store", str(tmp_path / "ws"), "ingest", str(path), "--name", "log"]
    )
    assert (code, err) == (0, ""), err
    assert "ingested log: 2 events, 2 users, 2 items" in out
    assert (
        "columns: user='user_id', item='item_id', time='timestamp'; timestamps read as epoch"
        " seconds; ignored: none"
    ) in out


@pytest.mark.parametrize(
    ("header", "row", "read", "unit"),
    [
        ("userId,movieId,rating,timestamp", "1,2,4.5,1700000000",
         {"user": "userId", "item": "movieId", "time": "timestamp", "rating": "rating"}, "s"),
        ("asin,reviewerID,overall,unixReviewTime", "B01,A9,5.0,1700000000",
         {"user": "reviewerID", "item": "asin", "time": "unixReviewTime",
          "rating": "overall"}, "s"),
        ("User ID,Item,Date", "u,i,2024-03-02",
         {"user": "User ID", "item": "Item", "time": "Date"}, "iso"),
        ("uid;iid;ts;genre", "u;i;1700000000000000;Drama",
         {"user": "uid", "item": "iid", "time": "ts", "category": "genre"}, "us"),
    ],
)  # fmt: skip
def test_common_header_names_are_recognised(
    tmp_path: Path, header: str, row: str, read: dict[str, str], unit: str
) -> None:
    con = connect_memory()
    info = ingest(con, write(tmp_path / "h.csv", f"{header}\n{row}\n"), name="h")
    assert info.params["columns"] == read
    assert info.params["time_read_as"] == unit
    assert info.n_events == 1


def test_category_column_is_read_and_other_columns_are_listed_as_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "user,item,time,category,price,tags\nu,a,1700000000,x,3,t\n")
    con = connect_memory()
    info = ingest(con, path, name="c")
    assert info.has_category
    assert info.params["ignored_columns"] == ["price", "tags"]
    code, out, _ = run_cli(["--store", str(tmp_path / "ws"), "ingest", str(path), "--name", "c"])
    assert code == 0
    assert "category='category'" in out
    assert "ignored: 'price', 'tags'" in out


def test_parquet_columns_are_recognised(tmp_path: Path) -> None:
    table = pa.table(
        {"user_id": ["u", "v"], "item_id": [1, 2], "datetime": ["2024-01-01", "2024-01-02"]}
    )
    pq.write_table(table, tmp_path / "p.parquet")
    info = ingest(connect_memory(), tmp_path / "p.parquet", name="p")
    assert info.params["columns"] == {"user": "user_id", "item": "item_id", "time": "datetime"}
    assert info.params["time_read_as"] == "iso"


def test_flags_override_and_ambiguity_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "user,user_id,item,ts\nu,1,a,1700000000\n")
    con = connect_memory()
    with pytest.raises(
        IngestError,
        match=r"columns \['user', 'user_id'\] all look like the user column; pass --user-col NAME",
    ):
        ingest(con, path, name="a")
    info = ingest(con, path, name="a", user_col="user_id")
    assert info.params["columns"]["user"] == "user_id"
    assert info.params["ignored_columns"] == ["user"]


def test_a_missing_role_names_the_columns_and_the_flag(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    seed = write(tmp_path / "seed.csv", "user,item,ts\nu,a,1700000000\n")
    assert run_cli(["--store", str(store), "ingest", str(seed), "--name", "seed"])[0] == 0
    before = store_snapshot(store)
    path = write(tmp_path / "m.csv", "user,item,when_seen\nu,a,1700000000\n")
    code, out, err = run_cli(["--store", str(store), "ingest", str(path), "--name", "m"])
    assert_one_error_line(
        code, out, err,
        match="no column looks like the time column (expected a name such as timestamp, time, ts,"
        " datetime); the file has columns ['user', 'item', 'when_seen']; pass --time-col NAME",
    )  # fmt: skip
    assert store_snapshot(store) == before
    code, out, err = run_cli(["--store", str(store), "ingest", str(path), "--name", "m",
                              "--time-col", "when_seen"])  # fmt: skip
    assert code == 0, err
