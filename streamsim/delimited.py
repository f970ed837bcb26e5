"""Reading delimited text files for ingest: explicit dialect, strict rows, true line numbers.

DuckDB's CSV sniffer guesses a dialect from a sample, and on a malformed file it guesses wrong
silently (an unterminated quote becomes part of an id, a ragged row turns the header into one
column). So nothing here is sniffed. The header is read in Python: the leading comment/blank lines
(the *preamble*), the delimiter (the most frequent of ``,`` tab ``;`` ``|`` on the header line,
outside quotes) and the names. DuckDB then reads the rows with that dialect, RFC 4180 quoting
(``"`` around a field, ``""`` for a quote inside it) and a strict field count. Every malformed row
is collected with its byte position, and the first one is reported with its physical line.

Untrusted names never become SQL: the columns are addressed by position (``c0``, ``c1``, ...) and
the header's names are compared in Python only. Paths are bound as parameters, and a path with a
glob character is refused (DuckDB would expand it and read other files).

Line numbers are physical lines of the file (1-based), counted the way DuckDB splits records:
``\\n``, ``\\r\\n`` and a lone ``\\r`` end a line, blank lines between records are skipped, and a
quoted field may span lines. A row is named by the line where it starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb

from streamsim.errors import IngestError
from streamsim.store import fetch_one, quote_ident

DELIMITERS = (",", "\t", ";", "|")
_GLOB = re.compile(r"[*?\[\]{}]")
_FOUND = re.compile(r"Found:\s*(\d+)")
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes `surrogateescape` could not decode
_SAMPLE_LINES = 200  # physical lines after the header read to detect the delimiter
_SAMPLE_RECORDS = 50


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a delimited file is split into rows and fields."""

    delim: str  # one character
    quote: str = '"'  # '"' (RFC 4180) or '' (no quoting: a '"' is part of the value)
    header: bool = True
    skip: int = 0  # preamble: physical lines before the header (comments, blank lines)
    encoding: str = "utf-8"
    # the header record's line ending when a quoted header name holds another line break before
    # it (None otherwise: the first physical line's ending is the file's). DuckDB would take that
    # break for the file's line ending and read no row; told "\n", it reads the rows.
    newline: str | None = None


def file_arg(path: Path) -> str:
    """`path` as DuckDB should receive it (a bound parameter): absolute, with no glob character."""
    text = str(path.resolve())
    bad = _GLOB.search(text)
    if bad is not None:
        msg = (
            f"{path}: the path contains {bad.group()!r}, which DuckDB reads as a file pattern;"
            " expected a plain file name (rename the file or its directory)"
        )
        raise IngestError(msg)
    return text


def col_sql(k: int) -> str:
    """The SQL name of the `k`-th column (0-based) of a table read by `load`."""
    return quote_ident(f"c{int(k)}")


def columns_sql(n: int) -> str:
    """``"c0", "c1", ...`` for `n` columns (a column alias list)."""
    return ", ".join(col_sql(k) for k in range(n))


# ----------------------------------------------------------------------------- header


def read_header(
    path: Path, *, delim: str | None, quote: str = '"', encoding: str = "utf-8"
) -> tuple[Dialect, list[str]]:
    """The dialect and the header names of a delimited file with a header row.

    Reads only the preamble, the header and a sample of the rows after it. `delim` None detects
    the delimiter (`detect_delimiter`). `IngestError` for an empty file, a header that is not
    text in `encoding`, a malformed header record or one with a single column.
    """
    try:
        with path.open("r", encoding=encoding, errors="surrogateescape", newline="") as fh:
            skip, first = _skip_preamble(fh)
            sample = [first, *islice(fh, _SAMPLE_LINES)] if first is not None else []
    except OSError as exc:
        msg = f"{path}: cannot read ({exc.strerror or exc}); expected a readable file"
        raise IngestError(msg) from None
    if not sample:
        msg = f"{path}: empty file; expected a header row and interaction rows"
        raise IngestError(msg)
    line = skip + 1
    sep = delim if delim is not None else detect_delimiter(sample, quote)
    try:
        _, names, _, newline = next(_records_ends(sample, sep, quote, first_line=line))
    except _RecordError as exc:
        msg = f"{path}: line {exc.line}: header row: {exc.what}"
        raise IngestError(msg) from None
    if any(_UNDECODED.search(n) for n in names):
        msg = (
            f"{path}: line {line}: header row: invalid {encoding} text; expected a {encoding} file"
        )
        raise IngestError(msg)
    if len(names) < 2:
        msg = (
            f"{path}: line {line}: the header has one column {names[0]!r}; expected columns"
            " separated by ',', tab, ';' or '|'"
        )
        raise IngestError(msg)
    physical = sample[0][len(sample[0].rstrip("\r\n")) :]
    return Dialect(
        sep, quote, True, skip, encoding, newline if newline != physical else None
    ), names


def detect_delimiter(sample: list[str], quote: str = '"') -> str:
    """The delimiter of a file from its header line and the lines after it.

    Each of ``,`` tab ``;`` ``|`` splits the header and up to 50 records after it; the one under
    which most records have the header's number of fields (two or more) wins, then the one that
    gives the header more fields, then the first in that order. A candidate under which the
    header is malformed (a bad quote) is out.
    """
    best, best_key = DELIMITERS[0], (-1, -1)
    for sep in DELIMITERS:
        rows: list[int] = []
        try:
            for _, fields in _records(sample, sep, quote):
                rows.append(len(fields))
                if len(rows) > _SAMPLE_RECORDS:
                    break
        except _RecordError:
            pass
        if not rows or rows[0] < 2:
            continue
        key = (sum(n == rows[0] for n in rows[1:]), rows[0])
        if key > best_key:
            best, best_key = sep, key
    return best


def _skip_preamble(lines: Iterable[str]) -> tuple[int, str | None]:
    """(number of leading blank or ``#`` lines, the first other line or None)."""
    skip = 0
    for line in lines:
        body = line.rstrip("\r\n")
        if body and not body.startswith("#"):
            return skip, line
        skip += 1
    return skip, None


# ----------------------------------------------------------------------------- records


class _RecordError(Exception):
    """A malformed record found by `_records` (internal: callers turn it into `IngestError`)."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(f"line {line}: {what}")
        self.line = line
        self.what = what


def _records(
    lines: Iterable[str], delim: str, quote: str, *, first_line: int = 1
) -> Iterator[tuple[int, list[str]]]:
    """``(start line, fields)`` of each record of text `lines` (each ending in its newline)."""
    for start, fields, _, _ in _records_ends(lines, delim, quote, first_line=first_line):
        yield start, fields


def _records_ends(
    lines: Iterable[str], delim: str, quote: str, *, first_line: int = 1, blanks: bool = False
) -> Iterator[tuple[int, list[str], int, str]]:
    """``(start line, fields, end line, line ending)`` of each record of text `lines`.

    The same splitting as DuckDB's strict reader: blank lines outside quotes are no record, a
    quoted field may hold delimiters, newlines and ``""``; a quote inside an unquoted field is an
    ordinary character. As in DuckDB, one space before an opening quote and any spaces after a
    closing quote are ignored (two or more leading spaces make the field unquoted). Raises
    `_RecordError` for text after a closing quote or an unterminated quote (named by the line
    where its record starts). `blanks` also yields each blank line, as a record with no fields.
    """
    fields: list[str] = []
    chars: list[str] = []
    quoted = closed = False
    at_start = True
    start = first_line
    for n, line in enumerate(lines, first_line):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        if not quoted:
            if not body:
                if blanks:
                    yield n, [], n, ending
                continue
            start = n
            if not quote or quote not in body:  # fast path: a whole record on one line
                yield n, body.split(delim), n, ending
                continue
            fields, chars, closed, at_start = [], [], False, True
        k = 0
        while k < len(line):
            ch = line[k]
            if quoted:
                if ch != quote:
                    chars.append(ch)
                elif line[k + 1 : k + 2] == quote:
                    chars.append(quote)
                    k += 1
                else:
                    quoted, closed = False, True
            elif ch == delim:
                fields.append("".join(chars))
                chars, closed, at_start = [], False, True
            elif ch in "\r\n":
                break
            elif closed:
                if ch != " ":
                    raise _RecordError(start, "text after the closing quote of a field")
            elif ch == quote and at_start:
                quoted, at_start = True, False
            elif ch == " " and at_start and not chars and line[k + 1 : k + 2] == quote:
                pass  # one space before an opening quote
            else:
                chars.append(ch)
                at_start = False
            k += 1
        if not quoted:
            fields.append("".join(chars))
            yield start, fields, n, ending
    if quoted:
        raise _RecordError(start, "unterminated quote")


def mixed_line_ending(path: Path, dialect: Dialect) -> tuple[int, str, str] | None:
    """``(line, its ending, the first line's ending)`` of the first record that ends differently
    from the file's first line, or None. DuckDB cannot read such a file (it fails without saying
    where); this names the line. Reads the whole file in Python: for error messages only.
    """
    names = {"\r\n": "CRLF", "\n": "LF", "\r": "CR"}
    with path.open("r", encoding=dialect.encoding, errors="replace", newline="") as fh:
        first_line = fh.readline()
        first = dialect.newline or first_line[len(first_line.rstrip("\r\n")) :]
        fh.seek(0)
        try:
            for _, _, end, ending in _records_ends(fh, dialect.delim, dialect.quote, blanks=True):
                if ending and ending != first:
                    return end, names.get(ending, repr(ending)), names.get(first, repr(first))
        except _RecordError:
            return None
    return None


def record_line(path: Path, dialect: Dialect, rn: int) -> int:
    """The physical line where data row `rn` (1-based, after the header) of a file starts.

    Only called to report an error: it reads the file up to that row in Python.
    """
    with path.open("r", encoding=dialect.encoding, errors="replace", newline="") as fh:
        for _ in range(dialect.skip):
            fh.readline()
        want = rn + (1 if dialect.header else 0)
        for k, (line, _) in enumerate(
            _records(fh, dialect.delim, dialect.quote, first_line=dialect.skip + 1), 1
        ):
            if k == want:
                return line
    msg = f"{path}: row {rn} not found"  # the file changed while it was read
    raise IngestError(msg)


def line_at_byte(path: Path, pos: int) -> int:
    """The physical line of the row DuckDB's rejects table places at byte `pos`.

    DuckDB's position may fall one byte into the row or on a blank line before it; the row's first
    byte is the first byte at or after ``pos - 1`` that is no newline.
    """
    with path.open("rb") as fh:
        head = fh.read(max(pos - 1, 0))
        while (ch := fh.read(1)) in (b"\r", b"\n"):
            head += ch
    return 1 + head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")


# ----------------------------------------------------------------------------- DuckDB readers


def load(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    dialect: Dialect,
    n_cols: int,
    *,
    expected: str,
) -> None:
    """TEMP TABLE `table` ``(rn, c0, .., c{n_cols-1})`` of the rows of a delimited file, as text.

    ``rn`` numbers the data rows 1.. in file order. A malformed row (wrong number of fields, a bad
    quote, invalid text) is an `IngestError` naming its line; `expected` describes the fields a
    row should have (e.g. ``"3 fields as in the header: user, item, ts"``).
    """
    rejects, scans = f"{table}_rejects", f"{table}_scans"
    params = {
        "path": file_arg(path),
        "delim": dialect.delim,
        "quote": dialect.quote,
        "header": dialect.header,
        "skip": dialect.skip,
        "encoding": dialect.encoding,
        "columns": {f"c{k}": "VARCHAR" for k in range(n_cols)},
        "rejects": rejects,
        "scans": scans,
    }
    table_sql, rejects_sql, scans_sql = quote_ident(table), quote_ident(rejects), quote_ident(scans)
    newline_sql = ""
    if dialect.newline == "\n":  # DuckDB reads no row when told "\r\n": left to detect those
        newline_sql, params["new_line"] = ", new_line = $new_line", "\\n"
    try:
        cur.execute(f"DROP TABLE IF EXISTS {rejects_sql}; DROP TABLE IF EXISTS {scans_sql}")
        cur.execute(
            f"CREATE TEMP TABLE {table_sql} AS SELECT row_number() OVER () AS rn, * FROM read_csv("
            "$path, delim = $delim, quote = $quote, escape = $quote, header = $header,"
            " skip = $skip, encoding = $encoding, columns = $columns, auto_detect = false,"
            " strict_mode = true, store_rejects = true, rejects_table = $rejects,"
            f" rejects_scan = $scans{newline_sql})",
            params,
        )
    except duckdb.Error as exc:
        _refuse_mixed_endings(path, dialect, None)
        msg = f"{path}: cannot read as a delimited file: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from None
    bad = _first_reject(cur, rejects_sql)
    if bad is not None:
        pos, kind, text = bad
        line = line_at_byte(path, int(pos))
        _refuse_mixed_endings(path, dialect, line)
        msg = f"{path}: line {line}: {_reject_text(kind, text, dialect, expected)}"
        raise IngestError(msg)
    empty = fetch_one(cur, f"SELECT count(*) = 0 FROM {table_sql}")
    if empty is not None and empty[0]:
        _refuse_unread_records(path, dialect, n_cols, expected)


def _refuse_unread_records(path: Path, dialect: Dialect, n_cols: int, expected: str) -> None:
    """DuckDB read no data row: make sure the file has none either. Its reader can miss rows
    after a header with a quoted line break in it; the first record after the header then
    gets the same one-line error a rejected row gets (or, well-formed, says it was not read)."""
    with path.open("r", encoding=dialect.encoding, errors="replace", newline="") as fh:
        for _ in range(dialect.skip):
            fh.readline()
        records = _records(fh, dialect.delim, dialect.quote, first_line=dialect.skip + 1)
        try:
            next(records, None)  # the header
            first = next(records, None)
        except _RecordError as exc:
            msg = f"{path}: line {exc.line}: {exc.what}"
            raise IngestError(msg) from None
    if first is None:
        return
    line, fields = first
    if len(fields) != n_cols:
        n = len(fields)
        msg = f"{path}: line {line}: {n} field{'s' if n != 1 else ''}; expected {expected}"
    else:
        msg = (
            f"{path}: line {line}: the rows after the header were not read (a line break inside"
            " a quoted header name?); expected a header without line breaks"
        )
    raise IngestError(msg)


def _refuse_mixed_endings(path: Path, dialect: Dialect, before: int | None) -> None:
    """`IngestError` naming the first line with another line ending (at or before `before`)."""
    mixed = mixed_line_ending(path, dialect)
    if mixed is not None and (before is None or mixed[0] <= before):
        line, got, first = mixed
        msg = (
            f"{path}: line {line}: ends with {got}, but line 1 ends with {first}; expected the"
            " same line ending on every line"
        )
        raise IngestError(msg)


def _reject_text(kind: str, text: str, dialect: Dialect, expected: str) -> str:
    if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
        found = _FOUND.search(text or "")
        n = int(found.group(1)) if found else -1
        got = f"{n} field{'s' if n != 1 else ''}" if found else kind.lower()
        return f"{got}; expected {expected}"
    if kind == "UNQUOTED VALUE":
        return (
            "a quoted field is not closed properly (an unterminated quote, or text after the"
            ' closing quote); expected "..." around the whole field, with "" for a quote inside'
        )
    if kind == "INVALID ENCODING":
        return f"invalid {dialect.encoding} text; expected a {dialect.encoding} file"
    first = (text or "").strip().splitlines()
    return f"{kind.lower()}: {first[0] if first else 'rejected'}"


def load_lines(
    cur: duckdb.DuckDBPyConnection, table: str, path: Path, *, encoding: str = "utf-8"
) -> None:
    """TEMP TABLE `table` ``(ln, line)``: every physical line of a text file, numbered 1..

    Blank lines are kept (as NULL) so that ``ln`` is the true line number. A line holding the
    record-separator character (0x1E, used as the delimiter that never splits) is refused.
    """
    rejects, scans = f"{table}_rejects", f"{table}_scans"
    table_sql, rejects_sql, scans_sql = quote_ident(table), quote_ident(rejects), quote_ident(scans)
    params = {
        "path": file_arg(path),
        "encoding": encoding,
        "sep": "\x1e",
        "rejects": rejects,
        "scans": scans,
    }
    try:
        cur.execute(f"DROP TABLE IF EXISTS {rejects_sql}; DROP TABLE IF EXISTS {scans_sql}")
        cur.execute(
            f"CREATE TEMP TABLE {table_sql} AS SELECT row_number() OVER () AS ln, line FROM"
            " read_csv($path, columns = {'line': 'VARCHAR'}, delim = $sep, quote = '', escape = '',"
            " header = false, auto_detect = false, strict_mode = true, encoding = $encoding,"
            " store_rejects = true, rejects_table = $rejects, rejects_scan = $scans)",
            params,
        )
    except duckdb.Error as exc:
        msg = f"{path}: cannot read lines: {str(exc).splitlines()[0]}"
        raise IngestError(msg) from None
    bad = _first_reject(cur, rejects_sql)
    if bad is not None:
        line = line_at_byte(path, int(bad[0]))
        what = (
            f"invalid {encoding} text; expected a {encoding} file"
            if bad[1] == "INVALID ENCODING"
            else "contains the control character 0x1E; expected plain text"
        )
        msg = f"{path}: line {line}: {what}"
        raise IngestError(msg)


def _first_reject(cur: duckdb.DuckDBPyConnection, rejects_sql: str) -> tuple[Any, ...] | None:
    """(byte position, error type, message) of the first row DuckDB rejected, or None."""
    return fetch_one(
        cur,
        f"SELECT line_byte_position, error_type, error_message FROM {rejects_sql}"
        " ORDER BY line_byte_position LIMIT 1",
    )
