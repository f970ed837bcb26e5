"""Ingest real interaction logs into the event store.

Each format reader turns its files into one DuckDB table ``_src`` with the text columns
``(rn, line, u, i, t, c, r)``: source row number, the row's physical line when the reader knows it
(NULL for delimited files, where it is worked out only to report an error), raw user id, raw item
id, raw timestamp, raw category (or NULL) and raw rating (or NULL), plus an optional ``_meta``
table ``(i, title, genres, c)`` of item metadata. `_validate` checks every row in one query and
converts the timestamps to epoch seconds (``_raw``). A single SQL step then builds the replay order
(``ts``, then source row number ``rn``), the dense ids (users ``0..`` and items ``1..`` by first
appearance in replay order, categories ``0..`` likewise) and the mapping tables, and
`streamsim.store.write_dataset` stores everything in one transaction. Parsing runs on a separate
cursor whose temporary tables vanish with it, so a failure at any point leaves the store as it was.

Rules (docs/data.md, "Ingest rules"):

- Untrusted files never become SQL. Columns are addressed by position (`streamsim.delimited`);
  header names are compared in Python only; paths and values are bound as parameters.
- Timestamps: numbers are epoch values whose unit (s, ms, µs, ns) is read from their magnitude,
  text is an ISO date or date-time (an offset or zone name is honoured; none means UTC). One column
  holds one kind and one unit: a value of another kind or unit is an error naming its line, never
  a reason to reread the whole column. Dates must fall in ``[1970-01-01, 2100-01-01[`` unless
  `date_range` says otherwise.
- Every row is checked; the first bad row (missing id, bad timestamp, bad rating) is reported with
  its line, column, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace as _with
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from streamsim.delimited import (
    Dialect,
    col_sql,
    columns_sql,
    file_arg,
    load,
    load_lines,
    read_header,
    record_line,
)
from streamsim.errors import IngestError
from streamsim.store import (
    DatasetInfo,
    check_dataset_name,
    fetch_one,
    quote_ident,
    write_dataset,
)

FORMATS = (
    "ml-100k",
    "ml-1m",
    "ml-latest",
    "recbole",
    "csv",
    "parquet",
    "user-lines",
    "ciaodvd",
    "taobao",
    "rechorus",
    "amazon-ratings",
)
TIME_UNITS = ("auto", "s", "ms", "us", "ns", "iso")
DEFAULT_DATE_RANGE = ("1970-01-01", "2100-01-01")

_UNIT_NAMES = {
    "s": "epoch seconds",
    "ms": "epoch milliseconds",
    "us": "epoch microseconds",
    "ns": "epoch nanoseconds",
    "iso": "ISO dates",
}
_ISO_FORM = "an ISO date or date-time (YYYY-MM-DD[ HH:MM:SS][+HH:MM])"


@dataclass(frozen=True, slots=True)
class Columns:
    """Column names of a generic CSV / Parquet log."""

    user: str | None = None
    item: str | None = None
    time: str | None = None
    category: str | None = None
    rating: str | None = None
    time_unit: str = "auto"  # one of TIME_UNITS


@dataclass(frozen=True, slots=True)
class _Source:
    """Where the rows of ``_src`` come from: names a bad row and its columns in an error."""

    path: Path
    user: str  # column names as the user knows them
    item: str
    time: str
    unit: str  # time unit to read ``t`` with (one of TIME_UNITS)
    rating: str = "rating"
    dialect: Dialect | None = None  # delimited file: the line of row ``rn`` is found on demand
    rows: bool = False  # Parquet: rows have numbers, not lines
    id_path: Path | None = None  # the file holding the ids, when not `path` (user-lines)
    columns: tuple[tuple[str, str], ...] = ()  # generic formats: (role, column) read
    ignored: tuple[str, ...] = ()  # generic formats: the columns not read

    def where(self, rn: int, line: int | None) -> str:
        if line is not None:
            return f"line {line}"
        if self.dialect is not None:
            return f"line {record_line(self.path, self.dialect, rn)}"
        return f"row {rn}"


def _need(path: Path) -> Path:
    if not path.is_file():
        msg = f"{path}: file not found"
        raise IngestError(msg)
    if path.stat().st_size == 0:
        msg = f"{path}: empty file; expected interaction rows"
        raise IngestError(msg)
    return path


def detect_format(path: Path) -> str:
    """Guess the format from the file or directory name; `IngestError` when ambiguous."""
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if "u.data" in names:
            return "ml-100k"
        if "ratings.dat" in names:
            return "ml-1m"
        if "ratings.csv" in names:
            return "ml-latest"
        if "movie-ratings.txt" in names:
            return "ciaodvd"
        if "UserBehavior_prefix.csv" in names or "UserBehavior.csv" in names:
            return "taobao"
        if "train.csv" in names and "item_meta.csv" in names:
            return "rechorus"
        if any(n.endswith("_item_org_rank.txt") for n in names):
            return "user-lines"
        if any(n.endswith(".inter") for n in names):
            return "recbole"
    else:
        name = path.name
        if name == "u.data":
            return "ml-100k"
        if name == "ratings.dat":
            return "ml-1m"
        if name == "movie-ratings.txt":
            return "ciaodvd"
        if name.startswith("UserBehavior"):
            return "taobao"
        if name.endswith(("_item_org_rank.txt", "_time_org_rank.txt")):
            return "user-lines"
        if name.endswith(".inter"):
            return "recbole"
        if name.endswith(".parquet"):
            return "parquet"
        if name.endswith((".csv", ".tsv")):
            return "csv"
    msg = f"{path}: cannot detect the format; pass --format, one of {', '.join(FORMATS)}"
    raise IngestError(msg)


# ----------------------------------------------------------------------------- dates


def date_bounds(date_range: tuple[str, str]) -> tuple[int, int]:
    """``(lo, hi)`` epoch seconds of ``(FROM, TO)`` ISO dates: timestamps must be in ``[lo, hi[``.

    A date without an offset is UTC. `IngestError` unless ``FROM < TO``.
    """
    bounds = []
    for text in date_range:
        try:
            when = datetime.fromisoformat(str(text).strip())
        except ValueError:
            msg = f"date range {date_range!r}: {text!r} is no ISO date; expected YYYY-MM-DD"
            raise IngestError(msg) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        bounds.append(int(when.timestamp()))
    lo, hi = bounds
    if lo >= hi:
        msg = f"date range {date_range!r}: empty; expected FROM before TO"
        raise IngestError(msg)
    return lo, hi


def format_ts(ts: int) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``epoch N s`` outside years 1..9999."""
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts} s"


# ----------------------------------------------------------------------------- validation


def _validate(cur: duckdb.DuckDBPyConnection, src: _Source, *, lo: int, hi: int) -> str:
    """Check every row of ``_src`` and create ``_raw(rn, u, i, ts, c, r)``; returns the unit read.

    One pass classifies each timestamp (kind ``num`` or ``iso``; for numbers the unit by magnitude
    when `src.unit` is ``auto``), a second finds the first row with a problem, in file order.
    """
    if src.unit not in TIME_UNITS:
        msg = f"time unit must be one of {', '.join(TIME_UNITS)}, got {src.unit!r}"
        raise IngestError(msg)
    row = fetch_one(cur, "SELECT count(*) FROM _src")
    if row is None or row[0] == 0:
        msg = f"{src.path}: empty file; expected interaction rows"
        raise IngestError(msg)
    n_rows = int(row[0])
    numeric, iso = src.unit != "iso", src.unit in ("auto", "iso")
    cur.execute(
        "CREATE TEMP TABLE _cls AS SELECT rn, line, u, i, t, c, r, kind, unit,"
        " CASE kind WHEN 'num' THEN TRY_CAST(floor(v / CASE unit WHEN 's' THEN 1 WHEN 'ms'"
        " THEN 1e3 WHEN 'us' THEN 1e6 ELSE 1e9 END) AS BIGINT)"
        " WHEN 'iso' THEN TRY_CAST(floor(epoch(z)) AS BIGINT) END AS ts FROM ("
        " SELECT *, CASE WHEN $numeric AND v IS NOT NULL AND isfinite(v) THEN 'num'"
        " WHEN $iso AND z IS NOT NULL AND isfinite(z) THEN 'iso' END AS kind,"
        " CASE WHEN $unit <> 'auto' THEN $unit WHEN abs(v) < 1e11 THEN 's'"
        " WHEN abs(v) < 1e14 THEN 'ms' WHEN abs(v) < 1e17 THEN 'us' ELSE 'ns' END AS unit FROM ("
        " SELECT *, CASE WHEN $iso AND (v IS NULL OR NOT isfinite(v))"
        " THEN TRY_CAST(trim(t) AS TIMESTAMPTZ) END AS z FROM ("
        " SELECT *, CASE WHEN $numeric THEN TRY_CAST(trim(t) AS DOUBLE) END AS v FROM _src)))",
        {"numeric": numeric, "iso": iso, "unit": src.unit},
    )
    counts = fetch_one(
        cur,
        "SELECT count(*) FILTER (WHERE kind = 'num'), count(*) FILTER (WHERE kind = 'iso'),"
        " count(*) FILTER (WHERE kind = 'num' AND unit = 's'),"
        " count(*) FILTER (WHERE kind = 'num' AND unit = 'ms'),"
        " count(*) FILTER (WHERE kind = 'num' AND unit = 'us'),"
        " count(*) FILTER (WHERE kind = 'num' AND unit = 'ns') FROM _cls",
    )
    assert counts is not None
    n_num, n_iso, *per_unit = (int(x) for x in counts)
    kind = "num" if n_num >= n_iso else "iso"
    units = ("s", "ms", "us", "ns")
    unit = src.unit if src.unit not in ("auto", "iso") else units[per_unit.index(max(per_unit))]
    bad = _one(
        cur,
        "SELECT rn, line, problem, t, r, ts, unit FROM (SELECT *, CASE"
        " WHEN u IS NULL OR trim(u) = '' THEN 'user'"
        " WHEN i IS NULL OR trim(i) = '' THEN 'item'"
        " WHEN kind IS NULL OR ts IS NULL THEN 'time'"
        " WHEN kind <> $kind THEN 'kind'"
        " WHEN kind = 'num' AND unit <> $unit THEN 'unit'"
        " WHEN ts < $lo OR ts >= $hi THEN 'range'"
        " WHEN r IS NOT NULL AND trim(r) <> ''"
        "  AND NOT coalesce(isfinite(TRY_CAST(trim(r) AS DOUBLE)), false) THEN 'rating'"
        " END AS problem FROM _cls) WHERE problem IS NOT NULL ORDER BY rn LIMIT 1",
        {"kind": kind, "unit": unit, "lo": lo, "hi": hi},
    )
    if bad is not None:
        counts_by = {"num": n_num, "iso": n_iso} | dict(zip(units, per_unit, strict=True))
        raise IngestError(_problem(src, bad, kind=kind, unit=unit, n_rows=n_rows,
                                   counts=counts_by, lo=lo, hi=hi))  # fmt: skip
    cur.execute(
        "CREATE TEMP TABLE _raw AS SELECT rn, u, i, ts, c,"
        " TRY_CAST(trim(r) AS DOUBLE) AS r FROM _cls"
    )
    return "iso" if kind == "iso" else unit


def _problem(
    src: _Source,
    bad: tuple[Any, ...],
    *,
    kind: str,
    unit: str,
    n_rows: int,
    counts: dict[str, int],
    lo: int,
    hi: int,
) -> str:
    """The error message for the first bad row found by `_validate`."""
    rn, line, problem, t, r, ts, row_unit = bad
    at = f"{src.path}: {src.where(int(rn), line)}"
    if problem in ("user", "item"):
        col = src.user if problem == "user" else src.item
        at = f"{src.id_path or src.path}: {src.where(int(rn), line)}"
        return f"{at}, column {col!r}: missing id; expected a non-empty value"
    if problem == "rating":
        return f"{at}, column {src.rating!r}: rating {r!r}; expected a number or an empty field"
    at = f"{at}, column {src.time!r}"
    if problem == "time":
        if src.unit == "iso" or (src.unit == "auto" and kind == "iso" and counts["iso"]):
            expect = _ISO_FORM
        elif src.unit == "auto" and counts["num"] == 0:
            expect = f"a number (epoch seconds, ms, µs or ns) or {_ISO_FORM}"
        else:
            expect = f"a number ({_UNIT_NAMES[unit]})"
        return f"{at}: unparsable timestamp {t!r}; expected {expect}"
    if problem == "kind":
        what = "a number" if kind == "iso" else "an ISO date"
        return (
            f"{at}: {t!r} is {what}, but {counts[kind]} of {n_rows} timestamps in the column are"
            f" {'ISO dates' if kind == 'iso' else 'numbers'}; expected one kind of timestamp per"
            " column"
        )
    if problem == "unit":
        return (
            f"{at}: {t.strip()} reads as {_UNIT_NAMES[row_unit]}, but {counts[unit]} of {n_rows}"
            f" timestamps read as {_UNIT_NAMES[unit]}; expected one unit per column (fix the row,"
            " or pass --time-unit to read every value in one unit)"
        )
    side = f"before {format_ts(lo)[:10]}" if ts < lo else f"on or after {format_ts(hi)[:10]}"
    return (
        f"{at}: {t.strip()!r} is {format_ts(int(ts))} UTC, {side}; expected dates from"
        f" {format_ts(lo)[:10]} to {format_ts(hi)[:10]} (pass --date-range FROM..TO to accept"
        " other dates)"
    )


# ----------------------------------------------------------------------------- header names

# Header names each role is recognised by when its flag is not given, compared without case,
# spaces, '_', '-' and '.' ("userId", "user_id" and "User ID" are one name).
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "uid", "customer_id", "reviewer_id", "visitor_id",
             "member_id", "session_id"),
    "item": ("item", "item_id", "itemid", "iid", "movie_id", "movieid", "asin", "product_id",
             "business_id", "article_id", "track_id", "song_id", "book_id", "isbn", "sku"),
    "time": ("timestamp", "time", "ts", "datetime", "date", "date_time", "event_time",
             "unix_time", "unix_timestamp", "unixreviewtime", "created_at"),
    "category": ("category", "category_id", "cat", "cat_id", "genre", "genres", "class"),
    "rating": ("rating", "score", "stars", "overall"),
}  # fmt: skip
_FLAGS = {role: f"--{role}-col" for role in ROLE_NAMES}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch not in " _-.")


def recognise_columns(path: Path, header: list[str], given: Columns) -> tuple[Columns, list[str]]:
    """Fill the roles `given` leaves open from the header names; the columns left unused.

    A role whose flag is missing takes the one header column whose name is one of its
    `ROLE_NAMES`. Two such columns is an error (the flag must choose), as is a user, item or time
    column that none matches; an optional role (category, rating) stays empty then.
    """
    chosen = {r: getattr(given, r) for r in ROLE_NAMES}
    taken = {n for n in chosen.values() if n is not None}
    for role, aliases in ROLE_NAMES.items():
        if chosen[role] is not None:
            continue
        wanted = {_norm(a) for a in aliases}
        hits = [h for h in header if _norm(h) in wanted and h not in taken]
        if len(hits) > 1:
            msg = (
                f"{path}: columns {hits} all look like the {role} column; pass"
                f" {_FLAGS[role]} NAME to choose one"
            )
            raise IngestError(msg)
        if not hits and role in ("user", "item", "time"):
            msg = (
                f"{path}: no column looks like the {role} column (expected a name such as"
                f" {', '.join(aliases[:4])}); the file has columns {header}; pass {_FLAGS[role]}"
                " NAME"
            )
            raise IngestError(msg)
        if hits:
            chosen[role] = hits[0]
            taken.add(hits[0])
    ignored = [h for h in header if h not in taken]
    return _with(given, **chosen), ignored


# ----------------------------------------------------------------------------- column lookup


def _position(path: Path, header: list[str], name: str, role: str) -> int:
    """The 0-based position of column `name` in `header`; `IngestError` if absent or repeated."""
    hits = [k for k, h in enumerate(header) if h == name]
    if not hits:
        msg = f"{path}: missing column {name!r}; the file has columns {header}"
        raise IngestError(msg)
    if len(hits) > 1:
        where = ", ".join(str(k + 1) for k in hits)
        msg = (
            f"{path}: column {name!r} ({role}) appears {len(hits)} times in the header"
            f" (columns {where}); expected one"
        )
        raise IngestError(msg)
    return hits[0]


def _distinct(path: Path, cols: _Cols, header: list[str]) -> None:
    seen: dict[int, str] = {}
    for role, k in cols.roles().items():
        if k is None:
            continue
        if k in seen:
            msg = (
                f"{path}: column {header[k]!r} is given as both {seen[k]} and {role};"
                " expected different columns"
            )
            raise IngestError(msg)
        seen[k] = role


def _fields_text(header: list[str]) -> str:
    names = ", ".join(h if h.isprintable() else repr(h) for h in header)
    return names if len(names) <= 80 else names[:77] + "..."


def _opt_sql(k: int | None) -> str:
    return col_sql(k) if k is not None else "CAST(NULL AS VARCHAR)"


@dataclass(frozen=True, slots=True)
class _Cols:
    """0-based positions of the columns of a log."""

    user: int
    item: int
    time: int
    category: int | None = None
    rating: int | None = None

    def roles(self) -> dict[str, int | None]:
        return {r: getattr(self, r) for r in ("user", "item", "time", "category", "rating")}


def _one(
    cur: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    """The first row of a query with named parameters (the result drained)."""
    rows = cur.execute(query, params).fetchall()
    return rows[0] if rows else None


def _delimited_src(
    cur: duckdb.DuckDBPyConnection,
    path: Path,
    dialect: Dialect,
    header: list[str],
    cols: _Cols,
) -> None:
    """``_src`` from a delimited file whose columns are `header` (read or fixed by the format)."""
    _distinct(path, cols, header)
    n = len(header)
    load(cur, "_csv", path, dialect, n, expected=f"{n} fields ({_fields_text(header)})")
    cur.execute(
        "CREATE TEMP TABLE _src AS SELECT rn, CAST(NULL AS BIGINT) AS line,"
        f" {col_sql(cols.user)} AS u, {col_sql(cols.item)} AS i, {col_sql(cols.time)} AS t,"
        f" {_opt_sql(cols.category)} AS c, {_opt_sql(cols.rating)} AS r FROM _csv"
    )


def _fixed(
    cur: duckdb.DuckDBPyConnection,
    path: Path,
    names: list[str],
    delim: str,
    quote: str,
    **roles: str,
) -> None:
    """``_src`` from a headerless file whose columns are `names` (roles map role -> name)."""
    cols = _Cols(**{role: names.index(col) for role, col in roles.items()})
    _delimited_src(cur, _need(path), Dialect(delim, quote, header=False), names, cols)


# ----------------------------------------------------------------------------- format readers


def _generic(cur: duckdb.DuckDBPyConnection, path: Path, fmt: str, given: Columns) -> _Source:
    """A CSV or Parquet log; the columns the flags leave open are recognised by name."""
    _need(path)
    if fmt == "parquet":
        header = _parquet_header(cur, path)
    else:
        dialect, header = read_header(path, delim=None)
    cols, ignored = recognise_columns(path, header, given)
    assert cols.user is not None
    assert cols.item is not None
    assert cols.time is not None
    positions = _Cols(
        _position(path, header, cols.user, "user"),
        _position(path, header, cols.item, "item"),
        _position(path, header, cols.time, "time"),
        _position(path, header, cols.category, "category") if cols.category else None,
        _position(path, header, cols.rating, "rating") if cols.rating else None,
    )
    read = tuple((r, c) for r in ROLE_NAMES if (c := getattr(cols, r)) is not None)
    source = _Source(
        path, cols.user, cols.item, cols.time, cols.time_unit, cols.rating or "",
        columns=read, ignored=tuple(ignored),
    )  # fmt: skip
    if fmt == "parquet":
        _parquet_src(cur, path, header, positions)
        return _with(source, rows=True)
    _delimited_src(cur, path, dialect, header, positions)
    return _with(source, dialect=dialect)


def _parquet_header(cur: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        desc = cur.execute(
            "DESCRIBE SELECT * FROM read_parquet($path)", {"path": file_arg(path)}
        ).fetchall()
    except duckdb.Error as exc:
        msg = f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from None
    return [str(r[0]) for r in desc]


def _parquet_src(
    cur: duckdb.DuckDBPyConnection, path: Path, header: list[str], cols: _Cols
) -> None:
    _distinct(path, cols, header)
    desc = cur.execute(
        "DESCRIBE SELECT * FROM read_parquet($path)", {"path": file_arg(path)}
    ).fetchall()
    for role, k in cols.roles().items():
        if k is not None and (str(desc[k][1]).endswith("]") or "(" in str(desc[k][1]).split()[0]):
            msg = (
                f"{path}: column {header[k]!r} ({role}) has type {desc[k][1]};"
                " expected text or a number"
            )
            raise IngestError(msg)

    def text_sql(k: int | None) -> str:
        return f"CAST({col_sql(k)} AS VARCHAR)" if k is not None else "CAST(NULL AS VARCHAR)"

    try:
        cur.execute(
            "CREATE TEMP TABLE _src AS SELECT row_number() OVER () AS rn,"
            f" CAST(NULL AS BIGINT) AS line, {text_sql(cols.user)} AS u,"
            f" {text_sql(cols.item)} AS i, {text_sql(cols.time)} AS t,"
            f" {text_sql(cols.category)} AS c, {text_sql(cols.rating)} AS r"
            f" FROM read_parquet($path) AS _p({columns_sql(len(header))})",
            {"path": file_arg(path)},
        )
    except duckdb.Error as exc:
        msg = f"{path}: cannot read: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from None


def _movielens_100k(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    root = path if path.is_dir() else path.parent
    data = root / "u.data"
    names = ["user", "item", "rating", "ts"]
    _fixed(cur, data, names, "\t", "", user="user", item="item", time="ts", rating="rating")
    item_file = root / "u.item"
    if item_file.is_file():
        genre_names = [
            "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
            "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
            "Romance", "Sci-Fi", "Thriller", "War", "Western",
        ]  # fmt: skip
        genre_file = root / "u.genre"
        if genre_file.is_file():
            load_lines(cur, "_genre", _need(genre_file))
            rows = cur.execute(
                "SELECT split_part(line, '|', 1), TRY_CAST(split_part(line, '|', 2) AS INTEGER)"
                " FROM _genre WHERE line LIKE '%|%' ORDER BY 2"
            ).fetchall()
            genre_names = [str(r[0]) for r in rows]
        load_lines(cur, "_item_lines", _need(item_file), encoding="latin-1")
        need = 5 + len(genre_names)
        short = _one(
            cur,
            "SELECT ln, len(string_split(line, '|')) FROM _item_lines WHERE trim(line) <> ''"
            " AND len(string_split(line, '|')) < $need ORDER BY ln LIMIT 1",
            {"need": need},
        )
        if short is not None:
            msg = (
                f"{item_file}: line {short[0]}: {short[1]} fields; expected at least {need}"
                " (5 + one flag per genre)"
            )
            raise IngestError(msg)
        cur.execute(
            "CREATE TEMP TABLE _meta AS SELECT parts[1] AS i, parts[2] AS title,"
            " array_to_string(g, '|') AS genres, g[1] AS c FROM ("
            " SELECT parts, list_filter($genres, lambda name, k: parts[5 + k] = '1') AS g FROM ("
            " SELECT string_split(line, '|') AS parts FROM _item_lines WHERE trim(line) <> ''))",
            {"genres": genre_names},
        )
    return _Source(data, "user", "item", "ts", "s", dialect=Dialect("\t", "", header=False))


def _movielens_1m(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    root = path if path.is_dir() else path.parent
    data = root / "ratings.dat"
    load_lines(cur, "_l", _need(data), encoding="latin-1")
    cur.execute(
        "CREATE TEMP TABLE _src AS SELECT ln AS rn, ln AS line, p[1] AS u, p[2] AS i, p[4] AS t,"
        " CAST(NULL AS VARCHAR) AS c, p[3] AS r, len(p) AS np"
        " FROM (SELECT ln, string_split(line, '::') AS p FROM _l WHERE trim(line) <> '')"
    )
    bad = fetch_one(cur, "SELECT line, np FROM _src WHERE np <> 4 ORDER BY rn LIMIT 1")
    if bad is not None:
        msg = f"{data}: line {bad[0]}: {bad[1]} fields; expected UserID::MovieID::Rating::Timestamp"
        raise IngestError(msg)
    movies = root / "movies.dat"
    if movies.is_file():
        load_lines(cur, "_m", movies, encoding="latin-1")
        bad = fetch_one(
            cur,
            "SELECT ln, len(string_split(line, '::')) FROM _m WHERE trim(line) <> ''"
            " AND len(string_split(line, '::')) <> 3 ORDER BY ln LIMIT 1",
        )
        if bad is not None:
            msg = f"{movies}: line {bad[0]}: {bad[1]} fields; expected MovieID::Title::Genres"
            raise IngestError(msg)
        cur.execute(
            "CREATE TEMP TABLE _meta AS SELECT p[1] AS i, p[2] AS title, p[3] AS genres,"
            " split_part(p[3], '|', 1) AS c FROM (SELECT string_split(line, '::') AS p FROM _m"
            " WHERE trim(line) <> '')"
        )
    return _Source(data, "UserID", "MovieID", "Timestamp", "s", rating="Rating")


def _movielens_latest(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    root = path if path.is_dir() else path.parent
    src = _generic(
        cur,
        root / "ratings.csv",
        "csv",
        Columns("userId", "movieId", "timestamp", None, "rating", "s"),
    )
    movies = root / "movies.csv"
    if movies.is_file():
        dialect, header = read_header(movies, delim=",")
        k_id, k_title, k_genres = (
            _position(movies, header, name, name) for name in ("movieId", "title", "genres")
        )
        n = len(header)
        load(cur, "_movies", movies, dialect, n, expected=f"{n} fields ({_fields_text(header)})")
        cur.execute(
            f"CREATE TEMP TABLE _meta AS SELECT {col_sql(k_id)} AS i, {col_sql(k_title)} AS title,"
            f" {col_sql(k_genres)} AS genres, split_part({col_sql(k_genres)}, '|', 1) AS c"
            " FROM _movies"
        )
    return src


def _recbole(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    """RecBole atomic files: tab-separated, no quoting, ``name:type`` headers."""
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            msg = f"{path}: no .inter file in this directory"
            raise IngestError(msg)
        path = inters[0]
    dialect, header = read_header(_need(path), delim="\t", quote="")
    keys = [h.split(":")[0] for h in header]
    for need in ("user_id", "item_id", "timestamp"):
        if need not in keys:
            msg = f"{path}: missing column {need!r} (RecBole 'name:type' header); got {header}"
            raise IngestError(msg)
    positions = _Cols(
        _position(path, keys, "user_id", "user"),
        _position(path, keys, "item_id", "item"),
        _position(path, keys, "timestamp", "time"),
        rating=_position(path, keys, "rating", "rating") if "rating" in keys else None,
    )
    _delimited_src(cur, path, dialect, header, positions)
    item_file = path.with_suffix(".item")
    if item_file.is_file():
        _recbole_items(cur, _need(item_file))
    return _Source(path, "user_id", "item_id", "timestamp", "auto", dialect=dialect)


def _recbole_items(cur: duckdb.DuckDBPyConnection, item_file: Path) -> None:
    """``_meta`` from a RecBole ``.item`` file (title from movie_title/title, genres from
    genre/class/categories, space-separated)."""
    dialect, header = read_header(item_file, delim="\t", quote="")
    keys = [h.split(":")[0] for h in header]
    if "item_id" not in keys:
        return
    k_item = _position(item_file, keys, "item_id", "item")
    k_title = next(
        (_position(item_file, keys, k, k) for k in ("movie_title", "title") if k in keys), None
    )
    k_genre = next(
        (_position(item_file, keys, k, k) for k in ("genre", "class", "categories") if k in keys),
        None,
    )
    n = len(header)
    load(cur, "_items_csv", item_file, dialect, n, expected=f"{n} fields ({_fields_text(header)})")
    genres_sql = f"replace({col_sql(k_genre)}, ' ', '|')" if k_genre is not None else "NULL"
    cur.execute(
        f"CREATE TEMP TABLE _meta AS SELECT {col_sql(k_item)} AS i, {_opt_sql(k_title)} AS title,"
        f" {genres_sql} AS genres, split_part({genres_sql}, '|', 1) AS c FROM _items_csv"
    )


def _user_lines(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    if path.is_dir():
        found = sorted(path.glob("*_item_org_rank.txt"))
        if not found:
            msg = f"{path}: no *_item_org_rank.txt file in this directory"
            raise IngestError(msg)
        item_file = found[0]
    elif path.name.endswith("_time_org_rank.txt"):
        item_file = path.with_name(path.name.replace("_time_org_rank.txt", "_item_org_rank.txt"))
    else:
        item_file = path
    time_file = item_file.with_name(item_file.name.replace("_item_", "_time_"))
    if item_file == time_file:
        msg = f"{path}: expected a '<name>_item_org_rank.txt' file with its '_time_' partner"
        raise IngestError(msg)
    load_lines(cur, "_li", _need(item_file))
    load_lines(cur, "_lt", _need(time_file))
    for file, table_sql in ((item_file, quote_ident("_li")), (time_file, quote_ident("_lt"))):
        blank = fetch_one(
            cur,
            f"SELECT ln FROM {table_sql} WHERE line IS NULL OR trim(line) = '' ORDER BY ln LIMIT 1",
        )
        if blank is not None:
            msg = f"{file}: line {blank[0]}: empty line; expected a user id followed by its values"
            raise IngestError(msg)
    counts = fetch_one(cur, "SELECT (SELECT count(*) FROM _li), (SELECT count(*) FROM _lt)")
    assert counts is not None
    if counts[0] != counts[1]:
        msg = f"{time_file}: {counts[1]} lines; expected {counts[0]} lines like {item_file.name}"
        raise IngestError(msg)
    cur.execute(
        "CREATE TEMP TABLE _pairs AS SELECT a.ln, string_split(trim(a.line), ' ') AS pi,"
        " string_split(trim(b.line), ' ') AS pt FROM _li a JOIN _lt b USING (ln)"
    )
    bad = fetch_one(
        cur,
        "SELECT ln, len(pi), len(pt), pi[1], pt[1] FROM _pairs"
        " WHERE len(pi) <> len(pt) OR pi[1] <> pt[1] ORDER BY ln LIMIT 1",
    )
    if bad is not None:
        msg = (
            f"{time_file}: line {bad[0]}: user {bad[4]!r} with {bad[2] - 1} timestamps;"
            f" expected user {bad[3]!r} with {bad[1] - 1} timestamps as in {item_file.name}"
        )
        raise IngestError(msg)
    cur.execute(
        "CREATE TEMP TABLE _src AS SELECT row_number() OVER (ORDER BY ln, k) AS rn, ln AS line,"
        " u, pi[k] AS i, pt[k] AS t, CAST(NULL AS VARCHAR) AS c, CAST(NULL AS VARCHAR) AS r FROM ("
        " SELECT ln, pi, pt, pi[1] AS u, unnest(range(2, len(pi) + 1)) AS k FROM _pairs)"
    )
    if fetch_one(cur, "SELECT count(*) FROM _src") == (0,):
        msg = f"{item_file}: empty file; expected one line per user"
        raise IngestError(msg)
    return _Source(time_file, "user", "item", "time", "s", id_path=item_file)


def _ciaodvd(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    data = path / "movie-ratings.txt" if path.is_dir() else path
    names = ["userID", "movieID", "genreID", "reviewID", "movieRating", "date"]
    _fixed(cur, data, names, ",", '"', user="userID", item="movieID", time="date",
           category="genreID", rating="movieRating")  # fmt: skip
    return _Source(data, "userID", "movieID", "date", "iso", rating="movieRating",
                   dialect=Dialect(",", '"', header=False))  # fmt: skip


def _taobao(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    if path.is_dir():
        found = sorted(path.glob("UserBehavior*.csv"))
        if not found:
            msg = f"{path}: no UserBehavior*.csv file in this directory"
            raise IngestError(msg)
        path = found[0]
    names = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    _fixed(cur, path, names, ",", '"', user="user_id", item="item_id", time="timestamp",
           category="category_id")  # fmt: skip
    return _Source(path, "user_id", "item_id", "timestamp", "s",
                   dialect=Dialect(",", '"', header=False))  # fmt: skip


def _rechorus(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    root = path if path.is_dir() else path.parent
    data = root / "train.csv" if path.is_dir() else path
    dialect, header = read_header(_need(data), delim="\t", quote="")
    positions = _Cols(
        _position(data, header, "user_id", "user"),
        _position(data, header, "item_id", "item"),
        _position(data, header, "time", "time"),
    )
    _delimited_src(cur, data, dialect, header, positions)
    meta = root / "item_meta.csv"
    if meta.is_file():
        mdialect, mheader = read_header(_need(meta), delim="\t", quote="")
        k_item = _position(meta, mheader, "item_id", "item")
        k_cat = _position(meta, mheader, "i_category", "category")
        n = len(mheader)
        load(cur, "_item_meta", meta, mdialect, n, expected=f"{n} fields ({_fields_text(mheader)})")
        cur.execute(
            f"CREATE TEMP TABLE _meta AS SELECT {col_sql(k_item)} AS i,"
            " CAST(NULL AS VARCHAR) AS title, CAST(NULL AS VARCHAR) AS genres,"
            f" CASE WHEN {col_sql(k_cat)} = '0' THEN NULL ELSE {col_sql(k_cat)} END AS c"
            " FROM _item_meta"
        )
    return _Source(data, "user_id", "item_id", "time", "s", dialect=dialect)


def _amazon_ratings(cur: duckdb.DuckDBPyConnection, path: Path) -> _Source:
    """Amazon review data 2018 "ratings only" CSV: ``item,user,rating,timestamp``, no header."""
    names = ["item", "user", "rating", "timestamp"]
    _fixed(cur, path, names, ",", '"', user="user", item="item", time="timestamp",
           rating="rating")  # fmt: skip
    return _Source(path, "user", "item", "timestamp", "s",
                   dialect=Dialect(",", '"', header=False))  # fmt: skip


_READERS: dict[str, Callable[[duckdb.DuckDBPyConnection, Path], _Source]] = {
    "ml-100k": _movielens_100k,
    "ml-1m": _movielens_1m,
    "ml-latest": _movielens_latest,
    "recbole": _recbole,
    "user-lines": _user_lines,
    "ciaodvd": _ciaodvd,
    "taobao": _taobao,
    "rechorus": _rechorus,
    "amazon-ratings": _amazon_ratings,
}


def _build(cur: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """Replay order, dense ids and mapping tables from ``_raw`` (+ ``_meta``)."""
    has_meta = bool(
        fetch_one(cur, "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_meta'")[0]  # type: ignore[index]
    )
    if not has_meta:
        cur.execute("CREATE TEMP TABLE _meta (i VARCHAR, title VARCHAR, genres VARCHAR, c VARCHAR)")
    cur.execute(
        "CREATE TEMP TABLE _meta1 AS SELECT trim(i) AS i, any_value(title) AS title,"
        " any_value(genres) AS genres, any_value(nullif(trim(c), '')) AS c FROM _meta GROUP BY 1"
    )
    cur.execute(
        "CREATE TEMP TABLE _ord AS SELECT row_number() OVER (ORDER BY ts, rn) - 1 AS idx,"
        " trim(u) AS u, trim(r.i) AS i, ts, coalesce(nullif(trim(r.c), ''), m.c) AS c, r.r"
        " FROM _raw r LEFT JOIN _meta1 m ON trim(r.i) = m.i"
    )
    cur.execute(
        "CREATE TEMP TABLE _users AS SELECT u AS raw,"
        " CAST(row_number() OVER (ORDER BY min(idx)) - 1 AS INTEGER) AS user_id"
        " FROM _ord GROUP BY u"
    )
    cur.execute(
        "CREATE TEMP TABLE _items AS SELECT i AS raw,"
        " CAST(row_number() OVER (ORDER BY min(idx)) AS INTEGER) AS item_id FROM _ord GROUP BY i"
    )
    cur.execute(
        "CREATE TEMP TABLE _cats AS SELECT c AS raw,"
        " CAST(row_number() OVER (ORDER BY min(idx)) - 1 AS INTEGER) AS category"
        " FROM _ord WHERE c IS NOT NULL GROUP BY c"
    )
    events = cur.sql(
        "SELECT o.idx, us.user_id, it.item_id, o.ts, ca.category, CAST(o.r AS REAL) AS rating"
        " FROM _ord o JOIN _users us ON o.u = us.raw JOIN _items it ON o.i = it.raw"
        " LEFT JOIN _cats ca ON o.c = ca.raw ORDER BY o.idx"
    ).to_arrow_table()
    users = cur.sql("SELECT user_id, raw FROM _users ORDER BY user_id").to_arrow_table()
    items = cur.sql(
        "SELECT it.item_id, it.raw, ca.category, m.title, m.genres FROM _items it"
        " LEFT JOIN (SELECT i, any_value(c) AS c FROM _ord GROUP BY i) e ON e.i = it.raw"
        " LEFT JOIN _meta1 m ON m.i = it.raw LEFT JOIN _cats ca ON ca.raw = e.c"
        " ORDER BY it.item_id"
    ).to_arrow_table()
    categories = cur.sql("SELECT category, raw FROM _cats ORDER BY category").to_arrow_table()
    return {"events": events, "users": users, "items": items, "categories": categories}


def ingest(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    name: str,
    format: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    category_col: str | None = None,
    rating_col: str | None = None,
    time_unit: str = "auto",
    date_range: tuple[str, str] = DEFAULT_DATE_RANGE,
    replace: bool = False,
    extra_params: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Parse a log and store it as dataset `name` in one transaction.

    Parameters
    ----------
    con
        Connection to the workspace store.
    path
        A file or a directory holding the format's files.
    format
        One of `FORMATS`, or ``"auto"`` to detect it from the file names.
    user_col, item_col, time_col, category_col, rating_col
        Column names for the generic ``csv`` / ``parquet`` formats. A role left None is
        recognised from the header names (`ROLE_NAMES`: ``user_id``, ``userId``, ``movieId``,
        ``asin``, ``timestamp``, ``genre``...); the columns read and those ignored are stored in
        ``params["columns"]`` and ``params["ignored_columns"]``.
    time_unit
        Generic formats: ``auto`` (numbers are epoch values whose unit is read from their
        magnitude: below 1e11 seconds, below 1e14 ms, below 1e17 µs, else ns; text is an ISO date
        or date-time), or one of ``s``, ``ms``, ``us``, ``ns``, ``iso`` for every value.
    date_range
        ``(FROM, TO)`` ISO dates: every timestamp must fall in ``[FROM, TO[`` (default
        1970-01-01 to 2100-01-01), so that a misread unit cannot pass as data.
    replace
        Overwrite an existing dataset of that name.
    extra_params
        Stored in the dataset's ``params`` next to the ingest options (e.g. the fetch URL).

    Returns
    -------
    DatasetInfo
        The stored dataset's metadata; ``params["time_read_as"]`` is the unit the timestamps were
        read in (``s``, ``ms``, ``us``, ``ns`` or ``iso``).

    Raises
    ------
    IngestError
        Unreadable input; the message names the file, line/column, the value and the expectation.
    StorageError
        Bad or duplicate name without `replace`. In every failure the store is left unchanged.
    """
    check_dataset_name(name)
    if time_unit not in TIME_UNITS:
        msg = f"time unit must be one of {', '.join(TIME_UNITS)}, got {time_unit!r}"
        raise IngestError(msg)
    lo, hi = date_bounds(date_range)
    src = Path(path).expanduser()
    if not src.exists():
        msg = f"{src}: no such file or directory"
        raise IngestError(msg)
    file_arg(src)  # refuse glob characters before anything is read
    fmt = detect_format(src) if format == "auto" else format
    if fmt not in FORMATS:
        msg = f"{src}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        raise IngestError(msg)
    cur = con.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")  # ISO date-times without an offset are UTC
        if fmt in ("csv", "parquet"):
            cols = Columns(user_col, item_col, time_col, category_col, rating_col, time_unit)
            source = _generic(cur, src, fmt, cols)
        else:
            source = _READERS[fmt](cur, src)
        read_as = _validate(cur, source, lo=lo, hi=hi)
        tables = _build(cur)
    finally:
        cur.close()
    params: dict[str, Any] = {
        "format": fmt,
        "user_col": user_col,
        "item_col": item_col,
        "time_col": time_col,
        "category_col": category_col,
        "rating_col": rating_col,
        "time_unit": time_unit,
        "time_read_as": read_as,
        "date_range": list(date_range) if tuple(date_range) != DEFAULT_DATE_RANGE else None,
        "columns": dict(source.columns) or None,
        "ignored_columns": list(source.ignored) if source.columns else None,
    }
    return write_dataset(
        con,
        name,
        events=tables["events"],
        users=tables["users"],
        items=tables["items"],
        categories=tables["categories"],
        source=str(src.resolve()),
        format=fmt,
        params={k: v for k, v in params.items() if v is not None} | (extra_params or {}),
        replace=replace,
    )
