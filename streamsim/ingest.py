"""Ingest real interaction logs into the event store.

Each format reader turns its files into one DuckDB table ``_raw`` with the columns
``(rn, u, i, ts, c, r)``: source row number, raw user id, raw item id, epoch seconds, raw
category (or NULL) and rating (or NULL), plus an optional ``_meta`` table
``(i, title, genres, c)`` of item metadata. A single SQL step then builds the replay order
(``ts``, then source row number ``rn``), the dense ids (users ``0..`` and items ``1..`` by first
appearance in replay order, categories ``0..`` likewise) and the mapping tables, and
`streamsim.store.write_dataset` stores everything in one transaction. Parsing runs on a separate
cursor whose temporary tables vanish with it, so a failure at any point leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from streamsim.errors import IngestError
from streamsim.store import DatasetInfo, fetch_one, write_dataset

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


@dataclass(frozen=True, slots=True)
class Columns:
    """Column names of a generic CSV / Parquet log."""

    user: str | None = None
    item: str | None = None
    time: str | None = None
    category: str | None = None
    rating: str | None = None
    time_unit: str = "auto"  # auto | s | ms | iso


def _s(path: Path) -> str:
    """A path as a SQL string literal (DuckDB table functions take no parameters for paths)."""
    return "'" + str(path).replace("'", "''") + "'"


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


def _time_sql(cur: duckdb.DuckDBPyConnection, path: Path, column: str, unit: str) -> str:
    """Create ``_raw`` from ``_src`` whose column ``t`` holds the raw timestamp text.

    Validates every timestamp and raises `IngestError` naming the 1-based line of the first bad
    row. Returns the unit used (``s``, ``ms`` or ``iso``).
    """
    if unit == "auto":
        row = fetch_one(
            cur,
            "SELECT count(*) FILTER (WHERE TRY_CAST(trim(t) AS DOUBLE) IS NULL),"
            " max(abs(TRY_CAST(trim(t) AS DOUBLE))) FROM _src",
        )
        assert row is not None
        non_numeric, biggest = row
        if non_numeric == 0:
            unit = "ms" if biggest is not None and biggest > 1e11 else "s"
        else:
            # numeric and ISO mixed or pure ISO: the first row decides
            first = fetch_one(cur, "SELECT t FROM _src ORDER BY rn LIMIT 1")
            assert first is not None
            try:
                float(str(first[0]).strip())
                unit = "s"
            except ValueError:
                unit = "iso"
    if unit in ("s", "ms"):
        scale = 1000 if unit == "ms" else 1
        # TRY_CAST twice: text that is no number, and numbers no int64 holds (nan, inf, 1e30),
        # both become NULL and are reported below with their line
        expr = f"TRY_CAST(floor(TRY_CAST(trim(t) AS DOUBLE) / {scale}) AS BIGINT)"
        expect = f"a number (epoch {'milliseconds' if unit == 'ms' else 'seconds'})"
    elif unit == "iso":
        expr = "TRY_CAST(epoch(TRY_CAST(trim(t) AS TIMESTAMP)) AS BIGINT)"
        expect = "an ISO date or date-time (YYYY-MM-DD[ HH:MM:SS])"
    else:
        msg = f"time unit must be auto, s, ms or iso, got {unit!r}"
        raise IngestError(msg)
    cur.execute(f"CREATE TEMP TABLE _raw AS SELECT rn, line, u, i, {expr} AS ts, c, r FROM _src")
    bad = fetch_one(
        cur,
        "SELECT s.line, s.t FROM _src s JOIN _raw USING (rn) WHERE _raw.ts IS NULL"
        " ORDER BY s.rn LIMIT 1",
    )
    if bad is not None:
        msg = (
            f"{path}: line {bad[0]}, column {column!r}: unparsable timestamp {bad[1]!r};"
            f" expected {expect}"
        )
        raise IngestError(msg)
    return unit


def _check_ids(cur: duckdb.DuckDBPyConnection, path: Path, user: str, item: str) -> None:
    for col, name in (("u", user), ("i", item)):
        bad = fetch_one(
            cur,
            f"SELECT line FROM _raw WHERE {col} IS NULL OR trim({col}) = '' ORDER BY rn LIMIT 1",
        )
        if bad is not None:
            msg = f"{path}: line {bad[0]}, column {name!r}: missing id; expected a non-empty value"
            raise IngestError(msg)


def _header(cur: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    return [d[0] for d in cur.execute(f"SELECT * FROM {source} LIMIT 0").description]


def _delimited(
    cur: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    delim: str,
    header: bool,
    names: list[str] | None = None,
    encoding: str = "utf-8",
) -> str:
    """A ``read_csv`` expression reading every column as text, with a line number ``line``."""
    _need(path)
    opts = [f"delim='{delim}'", f"header={'true' if header else 'false'}", "all_varchar=true"]
    if names is not None:
        opts.append("names=[" + ", ".join(f"'{n}'" for n in names) + "]")
    if encoding != "utf-8":
        opts.append(f"encoding='{encoding}'")
    opts.append("quote='\"'")
    return f"read_csv({_s(path)}, {', '.join(opts)})"


def _load_rows(
    cur: duckdb.DuckDBPyConnection,
    path: Path,
    reader: str,
    *,
    user: str,
    item: str,
    time: str,
    category: str | None,
    rating: str | None,
    header_lines: int,
) -> list[str]:
    """``_src(rn, line, u, i, t, c, r)`` from a reader expression; checks the columns exist."""
    try:
        cols = _header(cur, reader)
    except duckdb.Error as exc:
        msg = f"{path}: cannot read as a delimited file: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from exc
    for want in (user, item, time, category, rating):
        if want is not None and want not in cols:
            msg = f"{path}: missing column {want!r}; the file has columns {cols}"
            raise IngestError(msg)

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    c_expr = f"CAST({q(category)} AS VARCHAR)" if category else "CAST(NULL AS VARCHAR)"
    r_expr = f"TRY_CAST({q(rating)} AS DOUBLE)" if rating else "CAST(NULL AS DOUBLE)"
    try:
        cur.execute(
            "CREATE TEMP TABLE _src AS SELECT rn, rn + ? AS line, u, i, t, c, r FROM ("
            f"SELECT row_number() OVER () AS rn, CAST({q(user)} AS VARCHAR) AS u,"
            f" CAST({q(item)} AS VARCHAR) AS i, CAST({q(time)} AS VARCHAR) AS t,"
            f" {c_expr} AS c, {r_expr} AS r FROM {reader})",
            [header_lines],
        )
    except duckdb.Error as exc:
        msg = f"{path}: cannot parse: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from exc
    n = fetch_one(cur, "SELECT count(*) FROM _src")
    if n is None or n[0] == 0:
        msg = f"{path}: empty file; expected interaction rows"
        raise IngestError(msg)
    return cols


def _lines(cur: duckdb.DuckDBPyConnection, path: Path, table: str, encoding: str = "utf-8") -> None:
    """``table(ln, line)``: the file's lines (1-based numbers), read as one text column."""
    _need(path)
    enc = f", encoding='{encoding}'" if encoding != "utf-8" else ""
    try:
        cur.execute(
            f"CREATE TEMP TABLE {table} AS SELECT row_number() OVER () AS ln, line FROM read_csv("
            f"{_s(path)}, columns={{'line': 'VARCHAR'}}, delim='\\x1e', quote='', escape='',"
            f" header=false, auto_detect=false{enc})"
        )
    except duckdb.Error as exc:
        msg = f"{path}: cannot read lines: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from exc


# --------------------------------------------------------------------------- format readers


def _generic(cur: duckdb.DuckDBPyConnection, path: Path, fmt: str, cols: Columns) -> None:
    _need(path)
    missing = [
        n for n, v in (("user", cols.user), ("item", cols.item), ("time", cols.time)) if v is None
    ]
    if missing:
        msg = (
            f"{path}: format {fmt!r} needs --user-col, --item-col and --time-col; missing {missing}"
        )
        raise IngestError(msg)
    assert cols.user is not None
    assert cols.item is not None
    assert cols.time is not None
    if fmt == "parquet":
        reader = f"read_parquet({_s(path)})"
        header_lines = 0
    else:
        reader = f"read_csv({_s(path)}, header=true, all_varchar=true)"
        header_lines = 1
    _load_rows(
        cur,
        path,
        reader,
        user=cols.user,
        item=cols.item,
        time=cols.time,
        category=cols.category,
        rating=cols.rating,
        header_lines=header_lines,
    )
    _time_sql(cur, path, cols.time, cols.time_unit)
    _check_ids(cur, path, cols.user, cols.item)


def _movielens_100k(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    root = path if path.is_dir() else path.parent
    data = root / "u.data"
    reader = _delimited(
        cur, data, delim="\\t", header=False, names=["user", "item", "rating", "ts"]
    )
    _load_rows(
        cur,
        data,
        reader,
        user="user",
        item="item",
        time="ts",
        category=None,
        rating="rating",
        header_lines=0,
    )
    _time_sql(cur, data, "ts", "s")
    _check_ids(cur, data, "user", "item")
    item_file = root / "u.item"
    if item_file.is_file():
        genre_names = [
            "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
            "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
            "Romance", "Sci-Fi", "Thriller", "War", "Western",
        ]  # fmt: skip
        genre_file = root / "u.genre"
        if genre_file.is_file():
            _lines(cur, genre_file, "_genre")
            rows = cur.execute(
                "SELECT split_part(line, '|', 1), CAST(split_part(line, '|', 2) AS INTEGER)"
                " FROM _genre WHERE line LIKE '%|%' ORDER BY 2"
            ).fetchall()
            genre_names = [r[0] for r in rows]
        _lines(cur, item_file, "_item_lines", encoding="latin-1")
        n = len(genre_names)
        flags = " || ".join(
            f"CASE WHEN parts[{6 + k}] = '1' THEN ['{g.replace(chr(39), chr(39) * 2)}'] ELSE [] END"
            for k, g in enumerate(genre_names)
        )
        cur.execute(
            "CREATE TEMP TABLE _meta AS SELECT parts[1] AS i, parts[2] AS title,"
            " array_to_string(g, '|') AS genres, g[1] AS c FROM ("
            f"SELECT parts, ({flags}) AS g FROM (SELECT string_split(line, '|') AS parts"
            f" FROM _item_lines WHERE len(string_split(line, '|')) >= {5 + n}))"
        )


def _movielens_1m(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    root = path if path.is_dir() else path.parent
    data = root / "ratings.dat"
    _lines(cur, data, "_l", encoding="latin-1")
    cur.execute(
        "CREATE TEMP TABLE _src AS SELECT ln AS rn, ln AS line, p[1] AS u, p[2] AS i, p[4] AS t,"
        " CAST(NULL AS VARCHAR) AS c, TRY_CAST(p[3] AS DOUBLE) AS r, len(p) AS np"
        " FROM (SELECT ln, string_split(line, '::') AS p FROM _l WHERE trim(line) <> '')"
    )
    bad = fetch_one(cur, "SELECT line, np FROM _src WHERE np <> 4 ORDER BY rn LIMIT 1")
    if bad is not None:
        msg = f"{data}: line {bad[0]}: {bad[1]} fields; expected UserID::MovieID::Rating::Timestamp"
        raise IngestError(msg)
    if fetch_one(cur, "SELECT count(*) FROM _src") == (0,):
        msg = f"{data}: empty file; expected interaction rows"
        raise IngestError(msg)
    _time_sql(cur, data, "Timestamp", "s")
    _check_ids(cur, data, "UserID", "MovieID")
    movies = root / "movies.dat"
    if movies.is_file():
        _lines(cur, movies, "_m", encoding="latin-1")
        cur.execute(
            "CREATE TEMP TABLE _meta AS SELECT p[1] AS i, p[2] AS title, p[3] AS genres,"
            " split_part(p[3], '|', 1) AS c FROM (SELECT string_split(line, '::') AS p FROM _m)"
            " WHERE len(p) = 3"
        )


def _movielens_latest(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    root = path if path.is_dir() else path.parent
    data = root / "ratings.csv"
    _generic(cur, data, "csv", Columns("userId", "movieId", "timestamp", None, "rating", "s"))
    movies = root / "movies.csv"
    if movies.is_file():
        cur.execute(
            "CREATE TEMP TABLE _meta AS SELECT CAST(movieId AS VARCHAR) AS i, title, genres,"
            " split_part(genres, '|', 1) AS c"
            f" FROM read_csv({_s(movies)}, header=true, all_varchar=true)"
        )


def _recbole(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            msg = f"{path}: no .inter file in this directory"
            raise IngestError(msg)
        path = inters[0]
    reader = _delimited(cur, path, delim="\\t", header=True)
    cols = _header(cur, reader)
    by_name = {c.split(":")[0]: c for c in cols}
    for need in ("user_id", "item_id", "timestamp"):
        if need not in by_name:
            msg = f"{path}: missing column {need!r} (RecBole 'name:type' header); got {cols}"
            raise IngestError(msg)
    _load_rows(
        cur,
        path,
        reader,
        user=by_name["user_id"],
        item=by_name["item_id"],
        time=by_name["timestamp"],
        category=None,
        rating=by_name.get("rating"),
        header_lines=1,
    )
    _time_sql(cur, path, by_name["timestamp"], "auto")
    _check_ids(cur, path, "user_id", "item_id")
    item_file = path.with_suffix(".item")
    if item_file.is_file():
        ireader = _delimited(cur, item_file, delim="\\t", header=True)
        icols = {c.split(":")[0]: c for c in _header(cur, ireader)}
        if "item_id" in icols:
            title = next((icols[k] for k in ("movie_title", "title") if k in icols), None)
            genre = next((icols[k] for k in ("genre", "class", "categories") if k in icols), None)
            t_expr = f'"{title}"' if title else "NULL"
            g_expr = f"replace(\"{genre}\", ' ', '|')" if genre else "NULL"
            cur.execute(
                f'CREATE TEMP TABLE _meta AS SELECT "{icols["item_id"]}" AS i, {t_expr} AS title,'
                f" {g_expr} AS genres, split_part({g_expr}, '|', 1) AS c FROM {ireader}"
            )


def _user_lines(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
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
    _lines(cur, item_file, "_li")
    _lines(cur, time_file, "_lt")
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
        " u, pi[k] AS i, pt[k] AS t, CAST(NULL AS VARCHAR) AS c, CAST(NULL AS DOUBLE) AS r FROM ("
        " SELECT ln, pi, pt, pi[1] AS u, unnest(range(2, len(pi) + 1)) AS k FROM _pairs)"
    )
    if fetch_one(cur, "SELECT count(*) FROM _src") == (0,):
        msg = f"{item_file}: empty file; expected one line per user"
        raise IngestError(msg)
    _time_sql(cur, time_file, "time", "s")
    _check_ids(cur, item_file, "user", "item")


def _ciaodvd(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    data = path / "movie-ratings.txt" if path.is_dir() else path
    names = ["userID", "movieID", "genreID", "reviewID", "movieRating", "date"]
    reader = _delimited(cur, data, delim=",", header=False, names=names)
    _load_rows(
        cur,
        data,
        reader,
        user="userID",
        item="movieID",
        time="date",
        category="genreID",
        rating="movieRating",
        header_lines=0,
    )
    _time_sql(cur, data, "date", "iso")
    _check_ids(cur, data, "userID", "movieID")


def _taobao(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    if path.is_dir():
        found = sorted(path.glob("UserBehavior*.csv"))
        if not found:
            msg = f"{path}: no UserBehavior*.csv file in this directory"
            raise IngestError(msg)
        path = found[0]
    names = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    reader = _delimited(cur, path, delim=",", header=False, names=names)
    _load_rows(
        cur,
        path,
        reader,
        user="user_id",
        item="item_id",
        time="timestamp",
        category="category_id",
        rating=None,
        header_lines=0,
    )
    _time_sql(cur, path, "timestamp", "s")
    _check_ids(cur, path, "user_id", "item_id")


def _rechorus(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    root = path if path.is_dir() else path.parent
    data = root / "train.csv" if path.is_dir() else path
    reader = _delimited(cur, data, delim="\\t", header=True)
    _load_rows(
        cur,
        data,
        reader,
        user="user_id",
        item="item_id",
        time="time",
        category=None,
        rating=None,
        header_lines=1,
    )
    _time_sql(cur, data, "time", "s")
    _check_ids(cur, data, "user_id", "item_id")
    meta = root / "item_meta.csv"
    if meta.is_file():
        mreader = _delimited(cur, meta, delim="\\t", header=True)
        cur.execute(
            "CREATE TEMP TABLE _meta AS SELECT item_id AS i, CAST(NULL AS VARCHAR) AS title,"
            " CAST(NULL AS VARCHAR) AS genres,"
            f" CASE WHEN i_category = '0' THEN NULL ELSE i_category END AS c FROM {mreader}"
        )


def _amazon_ratings(cur: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Amazon review data 2018 "ratings only" CSV: ``item,user,rating,timestamp``, no header."""
    names = ["item", "user", "rating", "timestamp"]
    reader = _delimited(cur, path, delim=",", header=False, names=names)
    _load_rows(
        cur,
        path,
        reader,
        user="user",
        item="item",
        time="timestamp",
        category=None,
        rating="rating",
        header_lines=0,
    )
    _time_sql(cur, path, "timestamp", "s")
    _check_ids(cur, path, "user", "item")


_READERS: dict[str, Callable[[duckdb.DuckDBPyConnection, Path], None]] = {
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
        Column names for the generic ``csv`` / ``parquet`` formats.
    time_unit
        Generic formats: ``auto`` (numbers above 1e11 are epoch milliseconds, below are seconds,
        text is an ISO date), ``s``, ``ms`` or ``iso``.
    replace
        Overwrite an existing dataset of that name.
    extra_params
        Stored in the dataset's ``params`` next to the ingest options (e.g. the fetch URL).

    Returns
    -------
    DatasetInfo
        The stored dataset's metadata.

    Raises
    ------
    IngestError
        Unreadable input; the message names the file, line/column and the expectation.
    StorageError
        Duplicate name without `replace`. In every failure the store is left unchanged.
    """
    src = Path(path).expanduser()
    if not src.exists():
        msg = f"{src}: no such file or directory"
        raise IngestError(msg)
    fmt = detect_format(src) if format == "auto" else format
    if fmt not in FORMATS:
        msg = f"{src}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        raise IngestError(msg)
    cur = con.cursor()
    try:
        if fmt in ("csv", "parquet"):
            cols = Columns(user_col, item_col, time_col, category_col, rating_col, time_unit)
            _generic(cur, src, fmt, cols)
        else:
            _READERS[fmt](cur, src)
        tables = _build(cur)
    finally:
        cur.close()
    params = {
        "format": fmt,
        "user_col": user_col,
        "item_col": item_col,
        "time_col": time_col,
        "category_col": category_col,
        "rating_col": rating_col,
        "time_unit": time_unit,
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
