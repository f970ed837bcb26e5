"""Ingest of untrusted files: no SQL injection, no silent wrong data, one-line errors.

Each hostile case asserts the outcome (a stored dataset with the values read literally, or one
``error: ...`` line naming the file and line), and that a failure leaves every table of the store
as it was. The injection tests also check that nothing was written outside the workspace (a
sentinel directory) and that no foreign file's content reached the store.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamsim.errors import IngestError, StorageError
from streamsim.fetch import unpack
from streamsim.ingest import ingest
from streamsim.store import Workspace, connect_memory, write_dataset
from tests.ingest_support import (
    assert_one_error_line,
    hostile_names,
    run_cli,
    snapshot,
    store_snapshot,
    store_text,
)

SECRET = "TOPSECRET-4f1d9c"
COLS = {"user_col": "user", "item_col": "item", "time_col": "ts"}
FLAGS = ["--user-col", "user", "--item-col", "item", "--time-col", "ts"]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory store holding one dataset (a failure must leave it as it was)."""
    c = connect_memory()
    seed = write(tmp_path / "seed.csv", "user,item,ts\nu1,a,1600000000\nu2,b,1600000060\n")
    ingest(c, seed, name="seed", **COLS)
    return c


@pytest.fixture
def traps(tmp_path: Path) -> tuple[Path, Path]:
    """(an empty sentinel directory nothing may write to, a secret file nothing may read)."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    secret = write(tmp_path / "secret.txt", SECRET)
    return sentinel, secret


# ----------------------------------------------------------------------------- SQL injection


def test_recbole_item_header_injection_is_stored_literally(
    tmp_path: Path, traps: tuple[Path, Path]
) -> None:
    """The reported attack: a `.item` header whose name is pasted into SQL."""
    sentinel, secret = traps
    for k, evil in enumerate(hostile_names(sentinel, secret)):
        con = connect_memory()
        root = tmp_path / f"r{k}"
        root.mkdir()
        write(root / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t5\t881250949\n")
        header = f"item_id:token\tmovie_title:{evil}\tgenre:{evil}"
        write(root / "x.item", f"{header}\n5\tHeat\tAction Crime\n")
        ingest(con, root / "x.inter", name="r")
        rows = con.execute("SELECT raw, title, genres FROM items WHERE dataset = 'r'").fetchall()
        assert rows == [("5", "Heat", "Action|Crime")], evil
        assert list(sentinel.iterdir()) == [], evil
        assert SECRET not in store_text(con), evil
        attached = con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        assert ("evil",) not in attached, evil


def test_hostile_item_id_key_header_cannot_run_sql(
    tmp_path: Path, traps: tuple[Path, Path]
) -> None:
    """The key that selects the column is matched, the full name is never SQL text."""
    sentinel, secret = traps
    out = sentinel / "pwned.csv"
    evil = (
        f'item_id:token" AS i FROM (SELECT 1 AS "item_id:token"); COPY (SELECT 42) TO \'{out}\'; --'
    )
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t5\t881250949\n")
    write(tmp_path / "x.item", f"{evil}\tgenre:token_seq\n5\tAction\n")
    con = connect_memory()
    ingest(con, tmp_path / "x.inter", name="r")
    assert con.execute("SELECT raw, genres FROM items").fetchall() == [("5", "Action")]
    assert not out.exists()


def test_hostile_csv_and_parquet_headers(tmp_path: Path, traps: tuple[Path, Path]) -> None:
    sentinel, secret = traps
    for k, evil in enumerate(hostile_names(sentinel, secret)):
        con = connect_memory()
        path = write(
            tmp_path / f"h{k}.csv", csv_text([["user", evil, "ts"], ["u1", "a", "1600000000"]])
        )
        info = ingest(con, path, name="c", user_col="user", item_col=evil, time_col="ts")
        assert info.n_events == 1
        assert con.execute("SELECT raw FROM items").fetchall() == [("a",)]
        pq.write_table(
            pa.table({"user": ["u1"], evil: ["a"], "ts": [1600000000]}), tmp_path / f"h{k}.parquet"
        )
        ingest(
            con, tmp_path / f"h{k}.parquet", name="p", user_col="user", item_col=evil, time_col="ts"
        )
        assert con.execute("SELECT raw FROM items WHERE dataset = 'p'").fetchall() == [("a",)]
        # an unknown column named by the hostile text is an error, not SQL
        with pytest.raises(IngestError, match="missing column"):
            ingest(con, path, name="d", user_col="user", item_col=evil + "x", time_col="ts")
        assert list(sentinel.iterdir()) == [], evil
        assert SECRET not in store_text(con), evil


def test_hostile_names_through_the_cli_leave_no_file_outside_the_workspace(
    tmp_path: Path, traps: tuple[Path, Path]
) -> None:
    sentinel, secret = traps
    store = tmp_path / "ws"
    before_files = {p for p in tmp_path.rglob("*")}
    for k, evil in enumerate(hostile_names(sentinel, secret)):
        path = write(
            tmp_path / f"c{k}.csv", csv_text([[evil, "item", "ts"], ["u1", "a", "1600000000"]])
        )
        base = [
            "--store",
            str(store),
            "ingest",
            str(path),
            "--item-col",
            "item",
            "--time-col",
            "ts",
        ]
        code, out, err = run_cli([*base, "--name", f"d{k}", "--user-col", evil])
        assert code == 0, err
        code, out, err = run_cli([*base, "--name", f"e{k}", "--user-col", evil[:-1] or "zz"])
        assert_one_error_line(code, out, err, match="missing column")
    assert list(sentinel.iterdir()) == []
    created = {p for p in tmp_path.rglob("*")} - before_files
    assert all(p.is_relative_to(store) or p.name.startswith("c") for p in created), created
    con = duckdb.connect(str(store / "streamsim.duckdb"), read_only=True)
    assert SECRET not in store_text(con)
    con.close()


def test_glob_characters_in_a_path_are_refused(tmp_path: Path) -> None:
    """DuckDB expands ``a[1].csv`` to ``a1.csv``: a different file would be read in."""
    write(tmp_path / "a1.csv", "user,item,ts\nintruder,x,1600000000\n")
    path = write(tmp_path / "a[1].csv", "user,item,ts\nu1,a,1600000000\n")
    con = connect_memory()
    with pytest.raises(IngestError, match=r"a\[1\].csv: the path contains '\['"):
        ingest(con, path, name="g", **COLS)
    assert snapshot(con)["memory.main.events"] == []


def test_parquet_import_with_hostile_column_names_is_refused(
    tmp_path: Path, traps: tuple[Path, Path]
) -> None:
    """`datasets import` reads untrusted Parquet files; their column names reach no SQL."""
    sentinel, secret = traps
    con = connect_memory()
    ingest(con, write(tmp_path / "s.csv", "user,item,ts\nu1,a,1600000000\n"), name="s", **COLS)
    from streamsim.parquet_io import export_dataset, import_dataset

    export_dataset(con, "s", tmp_path / "exp")
    evil = hostile_names(sentinel, secret)[0]
    pq.write_table(pa.table({"user_id": [0], evil: ["u1"]}), tmp_path / "exp" / "users.parquet")
    before = snapshot(con)
    with pytest.raises(
        IngestError, match=r"users.parquet: columns \['user_id', .*expected \['user_id', 'raw'\]"
    ):
        import_dataset(con, tmp_path / "exp", name="s2")
    assert snapshot(con) == before
    assert list(sentinel.iterdir()) == []


# ----------------------------------------------------------------------------- timestamps


def seconds_file(tmp_path: Path, odd: str, at: int = 200, n: int = 200) -> Path:
    rows = [["user", "item", "ts"]]
    rows += [[f"u{k % 7}", f"i{k}", str(1_600_000_000 + 60 * k)] for k in range(n)]
    rows[at][2] = odd
    return write(tmp_path / "mixed.csv", csv_text(rows))


def test_one_millisecond_value_among_seconds_is_refused_with_its_line(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    before = snapshot(con)
    path = seconds_file(tmp_path, "1600012000000")
    with pytest.raises(
        IngestError,
        match=r"mixed.csv: line 201, column 'ts': 1600012000000 reads as epoch milliseconds,"
        r" but 199 of 200 timestamps read as epoch seconds; expected one unit per column",
    ):
        ingest(con, path, name="m", **COLS)
    assert snapshot(con) == before
    # the explicit unit reads the odd value as seconds: year 52,000, refused by the date range
    with pytest.raises(
        IngestError,
        match=r"line 201, column 'ts': '1600012000000' is epoch .* on or after 2100-01-01",
    ):
        ingest(con, path, name="m", time_unit="s", **COLS)
    # the odd row first: the majority decides, the first row is the one named
    with pytest.raises(
        IngestError,
        match=r"line 2, column 'ts': 1600012000000 reads as epoch milliseconds",
    ):
        ingest(con, seconds_file(tmp_path, "1600012000000", at=1), name="m", **COLS)
    assert snapshot(con) == before


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        (["1600000000", "1600000060"], "s"),
        (["1600000000000", "1600000060000"], "ms"),
        (["1600000000000000", "1600000060000000"], "us"),
        (["1600000000000000000", "1600000060000000000"], "ns"),
        (["1.6e18", "1.60000006e18"], "ns"),
        (["2020-09-13T12:26:40Z", "2020-09-13 12:27:40"], "iso"),
    ],
)
def test_epoch_units_are_detected_and_reported(
    tmp_path: Path, values: list[str], unit: str
) -> None:
    con = connect_memory()
    path = write(
        tmp_path / "u.csv",
        csv_text([["user", "item", "ts"]] + [["u", f"i{k}", v] for k, v in enumerate(values)]),
    )
    info = ingest(con, path, name="u", **COLS)
    assert (info.t_min, info.t_max) == (1_600_000_000, 1_600_000_060)
    assert info.params["time_read_as"] == unit


def test_iso_offsets_and_zones_are_honoured(tmp_path: Path) -> None:
    con = connect_memory()
    times = ["2020-01-01 02:00:00+02:00", "2020-01-01", "2020-01-01T01:00:00 Europe/Paris",
             "2020-01-01T00:00:00Z"]  # fmt: skip
    rows = [["user", "item", "ts"]] + [["u", f"i{k}", t] for k, t in enumerate(times)]
    ingest(con, write(tmp_path / "z.csv", csv_text(rows)), name="z", **COLS)
    assert con.execute("SELECT DISTINCT ts FROM events").fetchall() == [(1_577_836_800,)]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("-100", r"'-100' is 1969-12-31 23:58:20 UTC, before 1970-01-01"),
        ("1850-01-01", r"'1850-01-01' is 1850-01-01 00:00:00 UTC, before 1970-01-01"),
        ("2150-06-01", r"'2150-06-01' is 2150-06-01 00:00:00 UTC, on or after 2100-01-01"),
        ("5000000000", r"'5000000000' is 2128-06-11 08:53:20 UTC, on or after 2100-01-01"),
        ("9000000000000000000", r"'9000000000000000000' is 2255-03-14 .* on or after 2100-01-01"),
        ("99999-01-01", r"'99999-01-01' is epoch 3093496444800 s UTC, on or after 2100-01-01"),
    ],
)
def test_implausible_dates_are_refused_naming_the_row(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, value: str, match: str
) -> None:
    before = snapshot(con)
    # a first row of the same kind and unit, so that only the date range can object
    kind = "2020-01-01" if "-" in value[1:] else "1600000000" + "0" * (len(value) - 10)
    rows = [["user", "item", "ts"], ["u", "a", kind], ["u", "b", value]]
    with pytest.raises(
        IngestError,
        match=rf"d.csv: line 3, column 'ts': {match}; expected dates from 1970-01-01 to"
        r" 2100-01-01 \(pass --date-range",
    ):
        ingest(con, write(tmp_path / "d.csv", csv_text(rows)), name="d", **COLS)
    assert snapshot(con) == before


def test_date_range_flag_accepts_other_dates(tmp_path: Path) -> None:
    con = connect_memory()
    rows = [["user", "item", "ts"], ["u", "a", "1850-01-01"], ["u", "b", "2150-06-01"]]
    path = write(tmp_path / "d.csv", csv_text(rows))
    info = ingest(con, path, name="d", date_range=("1800-01-01", "2200-01-01"), **COLS)
    utc = timezone.utc
    expected = (datetime(1850, 1, 1, tzinfo=utc), datetime(2150, 6, 1, tzinfo=utc))
    assert (info.t_min, info.t_max) == tuple(int(d.timestamp()) for d in expected)
    with pytest.raises(IngestError, match=r"date range .*expected FROM before TO"):
        ingest(con, path, name="e", date_range=("2200-01-01", "1800-01-01"), **COLS)


def test_mixed_iso_and_numbers_name_the_odd_row(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = [
        ["user", "item", "ts"],
        ["u", "a", "2020-01-01"],
        ["u", "b", "2020-01-02"],
        ["u", "c", "1600000000"],
    ]
    with pytest.raises(
        IngestError,
        match=r"line 4, column 'ts': '1600000000' is a number, but 2 of 3 timestamps in the"
        r" column are ISO dates",
    ):
        ingest(con, write(tmp_path / "k.csv", csv_text(rows)), name="k", **COLS)


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            'user,item,ts\nu1,"a,1600000000\nu2,b,1600000060\n',
            r"line 2: a quoted field is not closed properly \(an unterminated quote",
        ),
        (
            'user,item,ts\nu1,a,1600000000\nu2,"b"x,1600000060\n',
            r"line 3: a quoted field is not closed properly",
        ),
        (
            "user,item,ts,cat\nu1,a,1600000000,x\nu2,b,1600000060,y,extra\n",
            r"line 3: 5 fields; expected 4 fields \(user, item, ts, cat\)",
        ),
        (
            "user,item,ts,cat\nu1,a,1600000000,x\nu2,b,1600000060\n",
            r"line 3: 3 fields; expected 4 fields \(user, item, ts, cat\)",
        ),
        ("user,item,ts\nu1,a,1600000000\n   \n", r"line 3: 1 field; expected 3 fields"),
        (
            b"user,item,ts\nu1,a\xff,1600000000\n",
            r"line 2: invalid utf-8 text; expected a utf-8 file",
        ),
        ("user,item,ts\nu1,,1600000000\n", r"line 2, column 'item': missing id"),
        ('user,item,ts\n"",a,1600000000\n', r"line 2, column 'user': missing id"),
    ],
)
def test_malformed_rows_name_their_line(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, text: str | bytes, match: str
) -> None:
    before = snapshot(con)
    with pytest.raises(IngestError, match=rf"bad.csv: {match}"):
        ingest(con, write(tmp_path / "bad.csv", text), name="b", **COLS)
    assert snapshot(con) == before


def test_unterminated_quote_is_not_a_phantom_item(tmp_path: Path) -> None:
    """The sniffer used to drop quoting and store the item '"a'."""
    con = connect_memory()
    with pytest.raises(IngestError, match="line 2: a quoted field is not closed"):
        ingest(
            con,
            write(tmp_path / "q.csv", 'user,item,ts\nu1,"a,100\nu2,b,200\nu3,c,300\n'),
            name="q",
            **COLS,
        )
    assert con.execute("SELECT count(*) FROM items").fetchone() == (0,)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("# exported 2024-01-01\n# by a tool\nuser,item,ts\nu1,a,1600000000\nu2,b,oops\n", 5),
        ("\n# comment\n\nuser,item,ts\nu1,a,1600000000\nu2,b,oops\n", 6),
        ('user,item,ts\nu1,"multi\nline\nitem",1600000000\nu2,b,oops\n', 5),
        ('user,item,ts\nu1,"a",1600000000\n\n\nu2,b,oops\n', 5),
        ("user,item,ts\r\nu1,a,1600000000\r\n\r\nu2,b,oops\r\n", 4),
        ('"us\ner",item,ts\nu1,a,1600000000\nu2,b,oops\n', 4),
        ("user,item,ts\n#u1,a,1600000000\nu2,b,oops\n", 3),
    ],
)
def test_line_numbers_after_comments_blank_lines_and_multiline_fields(
    tmp_path: Path, text: str, line: int
) -> None:
    con = connect_memory()
    user = "us\ner" if text.startswith('"us') else "user"
    with pytest.raises(
        IngestError, match=rf"l.csv: line {line}, column 'ts': unparsable timestamp 'oops'"
    ):
        ingest(
            con,
            write(tmp_path / "l.csv", text),
            name="l",
            user_col=user,
            item_col="item",
            time_col="ts",
        )


def test_a_line_break_inside_a_quoted_header_name(tmp_path: Path) -> None:
    """DuckDB takes a CRLF inside a quoted header name for the file's line ending and reads no
    row: the reader tells it the header record's own ending. Rows are read, and a ragged row is
    named by its line, never "empty file" (found by the ingest fuzz test)."""
    con = connect_memory()
    head = 'user,item,ts,c,"\r\n"\n'
    good = tmp_path / "good.csv"
    good.write_bytes((head + "u1,i1,1700000000,c,z\nu2,i2,1700000100,c,z\n").encode())
    info = ingest(con, good, name="g", user_col="user", item_col="item", time_col="ts")
    assert info.n_events == 2
    bad = tmp_path / "bad.csv"
    bad.write_bytes((head + 'u1,i1,0,"","",x\n').encode())
    with pytest.raises(IngestError, match=r"bad.csv: line 3: 6 fields; expected 5 fields"):
        ingest(con, bad, name="b", user_col="user", item_col="item", time_col="ts")


def test_spaces_around_quotes_are_read_as_duckdb_does(tmp_path: Path) -> None:
    """One space before an opening quote and spaces after a closing quote are ignored; two
    leading spaces make the field unquoted (its quotes are then part of the id)."""
    con = connect_memory()
    text = 'user,item,ts\nu1, "a,b"  ,1600000000\nu2,  "c",1600000001\nu3, "x\ny",oops\n'
    with pytest.raises(IngestError, match=r"s.csv: line 4, column 'ts': unparsable timestamp"):
        ingest(con, write(tmp_path / "s.csv", text), name="s", **COLS)
    ingest(con, write(tmp_path / "t.csv", text.rsplit("u3", 1)[0]), name="t", **COLS)
    assert con.execute("SELECT raw FROM items ORDER BY item_id").fetchall() == [("a,b",), ('"c"',)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "user,item,ts\nu1,a,1600000000\r\nu2,b,1600000001\n",
            "line 2: ends with CRLF, but line 1 ends with LF",
        ),
        (
            "user,item,ts\r\nu1,a,1600000000\r\nu2,b,1600000001\n",
            "line 3: ends with LF, but line 1 ends with CRLF",
        ),
        (
            "user,item,ts\nu1,a,1600000000\n\r\nu2,b,1600000001\n",
            "line 3: ends with CRLF, but line 1 ends with LF",
        ),
        ('user,item,ts\r\nu1,"a\nb",1600000000\r\nu2,b,1600000001\r\n', None),
    ],
)
def test_mixed_line_endings_are_refused_naming_the_line(
    tmp_path: Path, text: str, match: str | None
) -> None:
    con = connect_memory()
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode())
    if match is None:  # a line break inside a quoted field is part of the value
        ingest(con, path, name="m", **COLS)
        assert con.execute("SELECT raw FROM items ORDER BY item_id").fetchall() == [
            ("a\nb",),
            ("b",),
        ]
        return
    with pytest.raises(IngestError, match=rf"m.csv: {match}; expected the same line ending"):
        ingest(con, path, name="m", **COLS)


def test_a_hash_line_after_the_header_is_data(tmp_path: Path) -> None:
    con = connect_memory()
    info = ingest(
        con, write(tmp_path / "h.csv", "user,item,ts\n#u1,a,1600000000\n"), name="h", **COLS
    )
    assert info.n_events == 1
    assert con.execute("SELECT raw FROM users").fetchall() == [("#u1",)]


def test_duplicate_and_shared_columns(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "user,item,ts,item\nu,a,1600000000,b\n")
    with pytest.raises(
        IngestError, match=r"column 'item' \(item\) appears 2 times in the header \(columns 2, 4\)"
    ):
        ingest(con, path, name="d", **COLS)
    with pytest.raises(IngestError, match=r"column 'user' is given as both user and item"):
        ingest(con, path, name="d", user_col="user", item_col="user", time_col="ts")


def test_bad_rating_is_refused(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,ts,stars\nu,a,1600000000,4\nu,b,1600000001,nan\n")
    with pytest.raises(
        IngestError, match=r"line 3, column 'stars': rating 'nan'; expected a number"
    ):
        ingest(con, path, name="r", rating_col="stars", **COLS)


def test_user_lines_blank_line_and_ml1m_line_numbers(tmp_path: Path) -> None:
    con = connect_memory()
    write(tmp_path / "X_item_org_rank.txt", "1 7 8\n\n2 8 7\n")
    write(tmp_path / "X_time_org_rank.txt", "1 1600000000 1600000001\n\n2 1600000000 1600000001\n")
    with pytest.raises(IngestError, match=r"X_item_org_rank.txt: line 2: empty line"):
        ingest(con, tmp_path, name="l")
    root = tmp_path / "ml"
    root.mkdir()
    write(root / "ratings.dat", "1::1193::5::978300760\n\n1::661::3::oops\n")
    with pytest.raises(IngestError, match=r"ratings.dat: line 3, column 'Timestamp': unparsable"):
        ingest(con, root, name="m")


# ----------------------------------------------------------------------------- CLI and store


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    store = tmp_path / "ws"
    path = write(tmp_path / "seed.csv", "user,item,ts\nu1,a,1600000000\nu2,b,1600000060\n")
    code, _, err = run_cli(["--store", str(store), "ingest", str(path), "--name", "seed", *FLAGS])
    assert code == 0, err
    return store


BAD_FILES = {
    "mixed.csv": "user,item,ts\nu,a,1600000000\nu,b,1600000060\nu,c,1600000120000\n",
    "quote.csv": 'user,item,ts\nu,"a,1600000000\n',
    "ragged.csv": "user,item,ts,cat\nu,a,1600000000,x,extra\n",
    "ns-far.csv": "user,item,ts\nu,a,9000000000000000000\n",
    "old.csv": "user,item,ts\nu,a,1850-01-01\n",
    "empty.csv": "",
    "header.csv": "user,item,ts\n",
    "onecol.csv": "user item ts\nu a 1\n",
    "nocol.csv": "usr,item,ts\nu,a,1600000000\n",
    "binary.csv": b"\x00\xff\xfe garbage \x80\x81",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_cli_bad_input_is_one_error_line_and_the_store_is_unchanged(
    ws: Path, tmp_path: Path, name: str
) -> None:
    before = store_snapshot(ws)
    path = write(tmp_path / name, BAD_FILES[name])
    code, out, err = run_cli(["--store", str(ws), "ingest", str(path), "--name", "bad", *FLAGS])
    line = assert_one_error_line(code, out, err)
    assert str(path) in line
    assert store_snapshot(ws) == before


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ["ingest", "{tmp}/seed.csv", "--name", "x", "--time-unit", "fortnights"],
            "time unit must be one of",
        ),
        (["ingest", "{tmp}/seed.csv", "--name", "../x", *FLAGS], "dataset name must be letters"),
        (
            ["ingest", "{tmp}/seed.csv", "--name", "x", "--date-range", "2000"],
            "--date-range '2000': expected FROM..TO",
        ),
        (
            ["ingest", "{tmp}/seed.csv", "--name", "x", "--date-range", "a..b", *FLAGS],
            "is no ISO date",
        ),
        (["ingest", "{tmp}/nope.csv", "--name", "x"], "no such file or directory"),
        (["datasets", "show", "nope"], "unknown dataset 'nope'"),
        (["datasets", "delete", "nope"], "unknown dataset 'nope'"),
        (["datasets", "export", "seed", "{tmp}/seed.csv"], "cannot write the export"),
        (["datasets", "import", "{tmp}"], "meta.json: file not found"),
        (["datasets", "fetch", "nope"], "unknown public dataset 'nope'"),
        (["datasets", "fetch", "ml-100k", "--base-url", "notascheme:://"], "ml-100k.zip"),
    ],
)
def test_cli_user_errors_of_the_dataset_commands(
    ws: Path, tmp_path: Path, args: list[str], match: str
) -> None:
    before = store_snapshot(ws)
    argv = ["--store", str(ws), *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    code, out, err = run_cli(argv)
    assert_one_error_line(code, out, err, match=match)
    assert store_snapshot(ws) == before


def test_cli_store_that_is_a_file_or_not_a_database(tmp_path: Path) -> None:
    not_dir = write(tmp_path / "file", "x")
    for cmd in (
        ["datasets", "list"],
        ["datasets", "show", "x"],
        ["ingest", str(not_dir), "--name", "x"],
    ):
        code, out, err = run_cli(["--store", str(not_dir), *cmd])
        assert_one_error_line(
            code, out, err, match="not a directory; expected a workspace directory"
        )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    write(corrupt / "streamsim.duckdb", b"this is not a database" * 100)
    code, out, err = run_cli(["--store", str(corrupt), "datasets", "list"])
    assert_one_error_line(code, out, err, match="cannot open the store")
    assert (corrupt / "streamsim.duckdb").read_bytes() == b"this is not a database" * 100


def test_import_with_bad_meta_json(ws: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    code, _, err = run_cli(["--store", str(ws), "datasets", "export", "seed", str(exp)])
    assert code == 0, err
    meta = json.loads((exp / "meta.json").read_text())
    before = store_snapshot(ws)
    for bad, match in (
        ([1, 2], "a JSON list; expected an object"),
        ({**meta, "params": "x"}, "key 'params' is str; expected a dict"),
        ({k: v for k, v in meta.items() if k != "name"}, "key 'name' is nothing; expected a str"),
        ({**meta, "name": "../../etc"}, "dataset name must be letters"),
    ):
        write(exp / "meta.json", json.dumps(bad))
        code, out, err = run_cli(["--store", str(ws), "datasets", "import", str(exp)])
        assert_one_error_line(code, out, err, match=match)
    write(exp / "meta.json", json.dumps(meta))
    pq.write_table(pa.table({"user_id": ["x"], "raw": ["u"]}), exp / "users.parquet")
    code, out, err = run_cli(["--store", str(ws), "datasets", "import", str(exp), "--name", "c"])
    assert_one_error_line(code, out, err, match="users.parquet: column types do not fit")
    assert store_snapshot(ws) == before


def test_list_and_show_survive_out_of_range_timestamps_already_stored(tmp_path: Path) -> None:
    """A store written before the date checks may hold ~1e18 'seconds'; listing must not crash."""
    store = tmp_path / "ws"
    con = Workspace.resolve(store).connect()
    write_dataset(
        con,
        "far",
        events=pa.table(
            {
                "idx": [0, 1],
                "user_id": [0, 0],
                "item_id": [1, 2],
                "ts": [1_600_000_000_000_000_000, 1_600_000_000_000_000_001],
            }
        ),  # fmt: skip
        users=pa.table({"user_id": [0], "raw": ["u"]}),
        items=pa.table(
            {
                "item_id": [1, 2],
                "raw": ["a", "b"],
                "category": [None, None],
                "title": [None, None],
                "genres": [None, None],
            }
        ),  # fmt: skip
        source="old",
        format="csv",
    )
    con.close()
    code, out, err = run_cli(["--store", str(store), "datasets", "list"])
    assert (code, err) == (0, ""), err
    assert "out of range" in out
    code, out, err = run_cli(["--store", str(store), "datasets", "show", "far"])
    assert (code, err) == (0, ""), err
    assert "epoch 1600000000000000000 s (out of range)" in out
    code, out, err = run_cli(["--store", str(store), "datasets", "show", "far", "--json"])
    assert json.loads(out)["first"] == "epoch 1600000000000000000 s (out of range)"


def test_every_ingest_flag_has_help_text() -> None:
    code, out, _ = run_cli(["ingest", "--help"])
    assert code == 0
    for flag in ("--name", "--format", "--user-col", "--item-col", "--time-col", "--category-col",
                 "--rating-col", "--time-unit", "--date-range", "--replace", "--json"):  # fmt: skip
        section = out.split(flag, 1)[1].split("\n")[0]
        assert section.strip().strip("│").strip() not in ("", "TEXT"), (flag, section)


def test_zip_member_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/u.data", "1\t2\t3\t4\n")
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(IngestError, match=r"member '../../escaped.txt' would unpack outside"):
        unpack(archive, tmp_path / "out" / "x")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "x").exists()


def test_storage_error_for_bad_name_before_parsing(tmp_path: Path) -> None:
    con = connect_memory()
    with pytest.raises(StorageError, match="dataset name must be letters"):
        ingest(con, tmp_path / "does-not-matter.csv", name="a/b")
