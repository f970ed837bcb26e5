"""Property-based fuzzing of `streamsim ingest` against a small reference parser.

Hypothesis writes CSV, RecBole (``.inter`` + ``.item``) and user-lines files with hostile header
names (SQL that tries ``COPY ... TO`` a sentinel directory, ``ATTACH``, reading a secret file),
ids full of delimiters, quotes and newlines, timestamps in every epoch unit, as ISO text, out of
range or garbage, comment lines, blank lines, CRLF, ragged rows and broken quotes. Each file goes
through the real CLI in a workspace that already holds a dataset. The property:

- when the reference accepts the file, the command exits 0 and the stored events (raw user, raw
  item, timestamp, category, in replay order) equal the reference parse;
- when the reference refuses it, the command exits 1 with exactly one ``error: ...`` line that
  names the file (and, for a bad row, the reference's line number), and every table of the store
  is as it was;
- in every case the sentinel directory stays empty and the secret never reaches the store.

The reference is written from the documented rules (docs/data.md, "Ingest rules"), not from the
implementation: an RFC 4180 tokenizer over the whole text, the delimiter choice, the unit bands
and majorities, the date range and the order of the per-row checks.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.ingest_support import (
    assert_one_error_line,
    hostile_names,
    run_cli,
    store_snapshot,
    store_text,
)

SECRET = "TOPSECRET-fuzz-77"
LO, HI = 0, 4_102_444_800  # [1970-01-01, 2100-01-01[
DELIMS = (",", "\t", ";", "|")
FAST = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=400)


class RefError(Exception):
    """The reference refuses the file; `line` is the physical line it names (None: file-level)."""

    def __init__(self, line: int | None, what: str) -> None:
        super().__init__(f"line {line}: {what}")
        self.line = line


# ----------------------------------------------------------------------------- reference parser


def split_lines(text: str) -> list[str]:
    """Physical lines with their terminators (``\\r\\n``, ``\\r`` or ``\\n``)."""
    return text.splitlines(keepends=True) if text else []


def ref_records(
    text: str, delim: str, quote: str, first_line: int
) -> Iterator[tuple[int, list[str]]]:
    """RFC 4180 records of `text` with the physical line each starts on, in order; raises
    `RefError` where a malformed record starts. As documented (DuckDB's reading), one space before
    an opening quote and any spaces after a closing quote are ignored."""
    i, line, n = 0, first_line, len(text)

    def newline(k: int) -> int:
        return k + 2 if text.startswith("\r\n", k) else k + 1

    while i < n:
        if text[i] in "\r\n":  # a blank line is no record
            i, line = newline(i), line + 1
            continue
        start, fields = line, []
        while True:
            if quote and text.startswith(" " + quote, i):  # one space before a quote: ignored
                i += 1
            if quote and text.startswith(quote, i):
                i, buf = i + 1, []
                while True:
                    if i >= n:
                        raise RefError(start, "unterminated quote")
                    if text[i] == quote:
                        if text.startswith(quote, i + 1):
                            buf.append(quote)
                            i += 2
                            continue
                        i += 1
                        break
                    if text[i] in "\r\n":
                        j = newline(i)
                        buf.append(text[i:j])
                        i, line = j, line + 1
                        continue
                    buf.append(text[i])
                    i += 1
                while i < n and text[i] == " ":  # spaces after a closing quote: ignored
                    i += 1
                if i < n and text[i] not in (delim, "\r", "\n"):
                    raise RefError(start, "text after a closing quote")
                value = "".join(buf)
            else:
                j = i
                while j < n and text[j] not in (delim, "\r", "\n"):
                    j += 1
                value, i = text[i:j], j
            fields.append(value)
            if i < n and text[i] == delim:
                i += 1
                continue
            break
        if i < n:
            i, line = newline(i), line + 1
        yield start, fields


def records_until_error(
    text: str, delim: str, quote: str, first_line: int
) -> list[tuple[int, list[str]]]:
    """The records before the first malformed one."""
    good: list[tuple[int, list[str]]] = []
    try:
        for record in ref_records(text, delim, quote, first_line):
            good.append(record)
    except RefError:
        pass
    return good


def checked_records(
    body: str, delim: str, quote: str, first_line: int, width: int
) -> list[tuple[int, list[str]]]:
    """The data records after the header; the first malformed or ragged one is a `RefError`."""
    out = []
    for k, (line, fields) in enumerate(ref_records(body, delim, quote, first_line)):
        if k == 0:
            continue
        if len(fields) != width:
            raise RefError(line, "ragged")
        out.append((line, fields))
    return out


def ref_header(text: str, *, delim: str | None, quote: str) -> tuple[int, str, list[str], str]:
    """(preamble lines, delimiter, header names, the text after the preamble)."""
    lines = split_lines(text)
    skip = 0
    while skip < len(lines) and (not lines[skip].rstrip("\r\n") or lines[skip].startswith("#")):
        skip += 1
    if skip == len(lines):
        raise RefError(None, "empty file")
    body = "".join(lines[skip:])
    sample = "".join(lines[skip : skip + 201])
    if delim is None:
        best, best_key = DELIMS[0], (-1, -1)
        for d in DELIMS:
            rows = [len(f) for _, f in records_until_error(sample, d, quote, 1)][:51]
            if rows and rows[0] >= 2:
                key = (sum(r == rows[0] for r in rows[1:]), rows[0])
                if key > best_key:
                    best, best_key = d, key
        delim = best
    header = records_until_error(sample, delim, quote, skip + 1)[:1]
    if not header:
        raise RefError(None, "malformed header")
    names = header[0][1]
    if len(names) < 2:
        raise RefError(skip + 1, "one column")
    return skip, delim, names, body


def ref_time(values: list[str], unit: str) -> list[tuple[str, str | None, int | None]]:
    """Per value: (kind 'num'/'iso'/'' , unit or None, epoch seconds or None)."""
    out: list[tuple[str, str | None, int | None]] = []
    for raw in values:
        text = raw.strip(" ")
        num = None
        if unit != "iso":
            try:
                num = float(text)
            except ValueError:
                num = None
        if num is not None and math.isfinite(num):
            u = unit if unit not in ("auto", "iso") else (
                "s" if abs(num) < 1e11 else "ms" if abs(num) < 1e14 else "us" if abs(num) < 1e17
                else "ns"
            )  # fmt: skip
            ts = math.floor(num / {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[u])
            out.append(("num", u, ts if -(2**63) <= ts < 2**63 else None))
            continue
        iso = None
        if unit in ("auto", "iso"):
            try:
                when = datetime.fromisoformat(text)
                iso = math.floor(
                    (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
                )
            except ValueError:
                iso = None
        out.append(("iso", None, iso) if iso is not None else ("", None, None))
    return out


def ref_rows(rows: list[tuple[int, str, str, str, str | None]], unit: str) -> list[tuple[Any, ...]]:
    """Check (line, user, item, time, category) rows as the documented rules do; the events."""
    if not rows:
        raise RefError(None, "empty file")
    times = ref_time([r[3] for r in rows], unit)
    kinds = Counter(k for k, _, _ in times if k)
    kind = "num" if kinds["num"] >= kinds["iso"] else "iso"
    units = Counter(u for k, u, _ in times if k == "num")
    majority = unit if unit not in ("auto", "iso") else max(
        ("s", "ms", "us", "ns"), key=lambda u: (units[u], -("s", "ms", "us", "ns").index(u))
    )  # fmt: skip
    events = []
    for (line, user, item, _, cat), (k, u, ts) in zip(rows, times, strict=True):
        if not user.strip(" "):
            raise RefError(line, "missing user")
        if not item.strip(" "):
            raise RefError(line, "missing item")
        if not k or ts is None:
            raise RefError(line, "unparsable timestamp")
        if k != kind:
            raise RefError(line, "kind")
        if k == "num" and u != majority:
            raise RefError(line, "unit")
        if not LO <= ts < HI:
            raise RefError(line, "range")
        c = cat.strip(" ") if cat is not None else None
        events.append((user.strip(" "), item.strip(" "), ts, c or None))
    return sorted(events, key=lambda e: e[2])  # stable: ties keep file order


# ----------------------------------------------------------------------------- generated files

ID_PIECES = st.sampled_from(list("abcXYZ019 _-.é#$?'\\") + [",", '"', ";", "|", "\t", "\n", "\r\n"])
VALUE = st.lists(ID_PIECES, max_size=6).map("".join)
ID = VALUE.filter(lambda v: bool(v.strip(" ")))  # an id that is not blank
TIME_KINDS = ("s", "ms", "us", "ns", "iso", "odd")


@st.composite
def timestamp(draw: st.DrawFn, profile: str, messy: bool = True) -> str:
    """A timestamp of the file's `profile` unit; `messy` ones may be of another kind, out of
    range or garbage."""
    kind = (
        profile if not messy or draw(st.integers(0, 9)) < 8 else draw(st.sampled_from(TIME_KINDS))
    )
    lo, hi = (-86_400 * 400, 4_200_000_000) if messy else (0, 4_100_000_000)
    seconds = draw(st.integers(lo, hi))
    if kind == "iso":
        when = datetime.fromtimestamp(seconds, tz=timezone.utc)
        form = draw(st.sampled_from(["%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                                     "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S+02:00"]))  # fmt: skip
        return when.strftime(form)
    if kind == "odd":
        return draw(st.sampled_from(["oops", "", " ", "nan", "inf", "1e30", "12:00", "2020-13-45",
                                     "-1", "1.5e9", " 1600000000 ", "9e18"]))  # fmt: skip
    scale = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[kind]
    return str(seconds * scale + draw(st.integers(0, scale - 1)))


@dataclass
class CsvCase:
    header: list[str]
    rows: list[list[str]]
    roles: dict[str, str]  # role -> column name passed on the command line
    damage: list[tuple[int, str]] = field(default_factory=list)  # (row, kind)
    preamble: list[str] = field(default_factory=list)
    newline: str = "\n"
    blank_after: set[int] = field(default_factory=set)
    quote_all: bool = False


def quote_field(value: str, delim: str, always: bool) -> str:
    if always or any(c in value for c in (delim, '"', "\r", "\n")) or value == "":
        return '"' + value.replace('"', '""') + '"'
    return value


def render_csv(case: CsvCase) -> str:
    nl = case.newline
    out = [p + nl for p in case.preamble]
    out.append(",".join(quote_field(h, ",", case.quote_all) for h in case.header) + nl)
    damage = dict(case.damage)
    for k, row in enumerate(case.rows):
        fields = [quote_field(v, ",", case.quote_all) for v in row]
        hurt = damage.get(k)
        if hurt == "extra":
            fields.append("x")
        elif hurt == "missing":
            fields.pop()
        elif hurt == "unterminated":
            fields[1] = '"' + row[1]
        elif hurt == "after-quote":
            fields[1] = '"' + row[1].replace('"', '""') + '"z'
        elif hurt == "space-quote":
            fields[1] = ' "' + row[1].replace('"', "") + '"'
        out.append(",".join(fields) + nl)
        if k in case.blank_after:
            out.append(nl)
    return "".join(out)


@st.composite
def csv_cases(draw: st.DrawFn, evil: list[str]) -> CsvCase:
    extra = draw(st.lists(st.sampled_from(evil) | VALUE, max_size=2))
    header = ["user", "item", "ts", "cat", *extra]
    perm = draw(st.permutations(range(len(header))))
    header = [header[k] for k in perm]
    names = {"user": "user", "item": "item", "time": "ts", "category": "cat"}
    if draw(st.integers(0, 4)) == 0:  # a hostile name in a mapped role
        role = draw(st.sampled_from(sorted(names)))
        new = draw(st.sampled_from(evil))
        header[header.index(names[role])] = new
        names[role] = new
    profile = draw(st.sampled_from(TIME_KINDS[:5]))
    messy = draw(st.integers(0, 9)) < 3
    ids = VALUE if messy else ID
    n = draw(st.integers(0, 8)) if messy else draw(st.integers(1, 8))
    rows = []
    for _ in range(n):
        values = {"user": draw(ids), "item": draw(ids), "ts": draw(timestamp(profile, messy)),
                  "cat": draw(VALUE)}  # fmt: skip
        row = [values.get(h, draw(VALUE)) if h in ("user", "item", "ts", "cat") else draw(VALUE)
               for h in header]  # fmt: skip
        for role, name in names.items():
            row[header.index(name)] = values[{"time": "ts", "category": "cat"}.get(role, role)]
        rows.append(row)
    kinds = ["extra", "missing", "unterminated", "after-quote", "space-quote"]
    damage = []
    if n and draw(st.integers(0, 6)) == 0:
        damage = [(draw(st.integers(0, n - 1)), draw(st.sampled_from(kinds)))]
    return CsvCase(
        header=header,
        rows=rows,
        roles=names,
        damage=damage,
        preamble=draw(st.lists(st.sampled_from(["# exported", "", "#a,b,c"]), max_size=2)),
        newline=draw(st.sampled_from(["\n", "\r\n"])),
        blank_after=set(draw(st.lists(st.integers(0, 8), max_size=2))),
        quote_all=draw(st.booleans()),
    )


def expect_csv(text: str, case: CsvCase) -> list[tuple[Any, ...]]:
    skip, delim, header, body = ref_header(text, delim=None, quote='"')
    positions = {}
    for role, name in case.roles.items():
        hits = [k for k, h in enumerate(header) if h == name]
        if len(hits) != 1:
            raise RefError(None, f"column {name!r}")
        positions[role] = hits[0]
    if len(set(positions.values())) < len(positions):
        raise RefError(None, "shared column")
    records = checked_records(body, delim, '"', skip + 1, len(header))
    rows = [(line, f[positions["user"]], f[positions["item"]], f[positions["time"]],
             f[positions["category"]]) for line, f in records]  # fmt: skip
    return ref_rows(rows, "auto")


# ----------------------------------------------------------------------------- the property


class Workspace:
    """A store holding a seed dataset, the sentinel directory and the secret file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "ws"
        self.sentinel = root / "sentinel"
        self.sentinel.mkdir()
        self.secret = root / "secret.txt"
        self.secret.write_text(SECRET)
        self.files = count()
        seed = root / "seed.csv"
        seed.write_text("user,item,ts\nu1,a,1600000000\nu2,b,1600000060\n")
        flags = ["--user-col", "user", "--item-col", "item", "--time-col", "ts"]
        code, _, err = run_cli(["--store", str(self.store), "ingest", str(seed), "--name", "seed",
                                *flags])  # fmt: skip
        assert code == 0, err
        self.before = store_snapshot(self.store)

    def new_dir(self) -> Path:
        path = self.root / f"case{next(self.files)}"
        path.mkdir()
        return path

    def check(
        self, args: list[str], data: Path, expected: list[tuple[Any, ...]] | RefError
    ) -> None:
        code, out, err = run_cli(["--store", str(self.store), "ingest", *args, "--name", "fz"])
        assert list(self.sentinel.iterdir()) == []
        event(
            "refused: " + str(expected).split(": ", 1)[1]
            if isinstance(expected, RefError)
            else "stored"
        )
        if isinstance(expected, RefError):
            line = assert_one_error_line(code, out, err)
            assert str(data) in line or data.name in line, line
            if expected.line is not None:
                assert f"line {expected.line}" in line, (expected, line)
            assert store_snapshot(self.store) == self.before
            return
        assert code == 0, (err, expected)
        try:
            self.compare(expected)
        finally:
            code, _, err = run_cli(["--store", str(self.store), "datasets", "delete", "fz"])
        assert code == 0, err
        assert store_snapshot(self.store) == self.before

    def compare(self, expected: list[tuple[Any, ...]]) -> None:
        con = duckdb.connect(str(self.store / "streamsim.duckdb"), read_only=True)
        try:
            got = con.execute(
                "SELECT u.raw, i.raw, e.ts, c.raw FROM events e"
                " JOIN users u ON u.dataset = e.dataset AND u.user_id = e.user_id"
                " JOIN items i ON i.dataset = e.dataset AND i.item_id = e.item_id"
                " LEFT JOIN categories c ON c.dataset = e.dataset AND c.category = e.category"
                " WHERE e.dataset = 'fz' ORDER BY e.idx"
            ).fetchall()
            assert SECRET not in store_text(con)
        finally:
            con.close()
        assert got == expected


def run_csv(ws: Workspace, case: CsvCase) -> None:
    folder = ws.new_dir()
    text = render_csv(case)
    path = folder / "log.csv"
    path.write_bytes(text.encode())
    try:
        expected: list[tuple[Any, ...]] | RefError = expect_csv(text, case)
    except RefError as exc:
        expected = exc
    roles = case.roles
    flags = ["--user-col", roles["user"], "--item-col", roles["item"], "--time-col", roles["time"],
             "--category-col", roles["category"]]  # fmt: skip
    ws.check([str(path), "--format", "csv", *flags], path, expected)


def fuzz_csv(ws: Workspace, config: settings) -> None:
    evil = hostile_names(ws.sentinel, ws.secret)

    @config
    @given(case=csv_cases(evil))
    def run(case: CsvCase) -> None:
        run_csv(ws, case)

    run()


# ----------------------------------------------------------------------------- RecBole

TOKEN = st.text(st.sampled_from(list("abcXYZ019 _-.é#$?'\\\",;|")), min_size=0, max_size=5)


@st.composite
def recbole_cases(
    draw: st.DrawFn, evil: list[str]
) -> tuple[str, str | None, list[tuple[Any, ...]] | RefError]:
    names = ["user_id:token", "item_id:token", "timestamp:float"]
    names += [f"x{k}:{draw(st.sampled_from(evil))}" for k in range(draw(st.integers(0, 2)))]
    names = [n.replace("\t", " ").replace("\n", " ").replace("\r", " ") for n in names]
    perm = draw(st.permutations(range(len(names))))
    header = [names[k] for k in perm]
    profile = draw(st.sampled_from(TIME_KINDS[:5]))
    messy = draw(st.integers(0, 9)) < 3
    users = TOKEN if messy else TOKEN.filter(lambda v: bool(v.strip(" ")))
    rows: list[list[str]] = []
    for _ in range(draw(st.integers(0 if messy else 1, 6))):
        item = draw(st.sampled_from(["1", "2", " 3", "z"]))
        values = {"user_id:token": draw(users), "item_id:token": item,
                  "timestamp:float": draw(timestamp(profile, messy))}  # fmt: skip
        rows.append([values.get(h, draw(TOKEN)) for h in header])
    if rows and draw(st.integers(0, 7)) == 0:
        rows[draw(st.integers(0, len(rows) - 1))].append("extra")
    inter = "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    item_text = None
    genres = {}
    if draw(st.booleans()):
        ih = [
            "item_id:token",
            f"genre:{draw(st.sampled_from(evil))}".replace("\t", " ").replace("\n", " "),
        ]
        if draw(st.booleans()):
            ih.insert(
                1,
                f"movie_title:{draw(st.sampled_from(evil))}".replace("\t", " ").replace("\n", " "),
            )
        genres = {i: draw(TOKEN) for i in ("1", "2", "3")}
        item_rows = ["\t".join([i, *(["t"] if len(ih) == 3 else []), g]) for i, g in genres.items()]
        item_text = "\t".join(ih) + "\n" + "".join(r + "\n" for r in item_rows)
    try:
        expected: list[tuple[Any, ...]] | RefError = expect_recbole(inter, genres)
    except RefError as exc:
        expected = exc
    return inter, item_text, expected


def expect_recbole(inter: str, genres: dict[str, str]) -> list[tuple[Any, ...]]:
    skip, _, header, body = ref_header(inter, delim="\t", quote="")
    keys = [h.split(":")[0] for h in header]
    pos = {k: keys.index(k) for k in ("user_id", "item_id", "timestamp")}
    records = checked_records(body, "\t", "", skip + 1, len(header))
    cats = {}
    for item, g in genres.items():
        first = g.replace(" ", "|").split("|")[0].strip(" ")
        cats[item] = first or None
    rows = [(line, f[pos["user_id"]], f[pos["item_id"]], f[pos["timestamp"]],
             cats.get(f[pos["item_id"]].strip(" "))) for line, f in records]  # fmt: skip
    return ref_rows(rows, "auto")


def fuzz_recbole(ws: Workspace, config: settings) -> None:
    evil = hostile_names(ws.sentinel, ws.secret)

    @config
    @given(case=recbole_cases(evil))
    def run(case: tuple[str, str | None, list[tuple[Any, ...]] | RefError]) -> None:
        inter, item_text, expected = case
        folder = ws.new_dir()
        path = folder / "x.inter"
        path.write_text(inter)
        if item_text is not None:
            (folder / "x.item").write_text(item_text)
        ws.check([str(path)], path, expected)

    run()


# ----------------------------------------------------------------------------- user-lines


@st.composite
def user_lines_cases(draw: st.DrawFn) -> tuple[str, str, list[tuple[Any, ...]] | RefError]:
    token = st.text(st.sampled_from(list("abcXYZ019_-.é#$?'\\\",;|\t")), min_size=1, max_size=4)
    messy = draw(st.integers(0, 9)) < 3
    profile = draw(st.sampled_from(["s", "ms", "odd"])) if messy else "s"
    item_lines, time_lines = [], []
    for _ in range(draw(st.integers(0 if messy else 1, 5))):
        user = draw(token)
        n = draw(st.integers(0, 4))
        items = [draw(token) for _ in range(n)]
        times = [draw(timestamp(profile, messy)).replace(" ", "") or "0" for _ in range(n)]
        item_lines.append(" ".join([user, *items]))
        time_lines.append(" ".join([user, *times]))
    if item_lines and draw(st.integers(0, 6)) == 0:
        k = draw(st.integers(0, len(item_lines) - 1))
        hurt = draw(st.sampled_from(["short", "blank", "user"]))
        if hurt == "short":
            time_lines[k] = (
                time_lines[k].rsplit(" ", 1)[0] if " " in time_lines[k] else time_lines[k] + " 5"
            )
        elif hurt == "blank":
            item_lines[k] = ""
        else:
            time_lines[k] = "other" + time_lines[k]
    items_text = "".join(x + "\n" for x in item_lines)
    times_text = "".join(x + "\n" for x in time_lines)
    try:
        expected: list[tuple[Any, ...]] | RefError = expect_user_lines(item_lines, time_lines)
    except RefError as exc:
        expected = exc
    return items_text, times_text, expected


def expect_user_lines(item_lines: list[str], time_lines: list[str]) -> list[tuple[Any, ...]]:
    for lines in (item_lines, time_lines):  # the item file is checked first
        for n, text in enumerate(lines, 1):
            if not text.strip(" "):
                raise RefError(n, "empty line")
    rows = []
    for n, (a, b) in enumerate(zip(item_lines, time_lines, strict=True), 1):
        pi, pt = a.strip(" ").split(" "), b.strip(" ").split(" ")
        if len(pi) != len(pt) or pi[0] != pt[0]:
            raise RefError(n, "misaligned")
        rows += [(n, pi[0], pi[k], pt[k], None) for k in range(1, len(pi))]
    if not rows:
        raise RefError(None, "empty file")
    return ref_rows(rows, "s")


def fuzz_user_lines(ws: Workspace, config: settings) -> None:
    @config
    @given(case=user_lines_cases())
    def run(case: tuple[str, str, list[tuple[Any, ...]] | RefError]) -> None:
        items_text, times_text, expected = case
        folder = ws.new_dir()
        path = folder / "X_item_org_rank.txt"
        path.write_text(items_text)
        (folder / "X_time_org_rank.txt").write_text(times_text)
        ws.check([str(path)], path.parent, expected)

    run()


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fuzz", [fuzz_csv, fuzz_recbole, fuzz_user_lines])
def test_fuzzed_files_are_stored_as_the_reference_reads_them_or_refused_cleanly(fuzz: Any) -> None:
    with tempfile.TemporaryDirectory() as root:
        fuzz(Workspace(Path(root)), FAST)


@pytest.mark.slow
@pytest.mark.parametrize("fuzz", [fuzz_csv, fuzz_recbole, fuzz_user_lines])
def test_fuzzed_files_long_run(fuzz: Any) -> None:
    with tempfile.TemporaryDirectory() as root:
        fuzz(Workspace(Path(root)), SLOW)


def test_reference_tokenizer_on_known_cases() -> None:
    text = 'a,"b\nc",d\n\n"x""y",z,\n'
    assert list(ref_records(text, ",", '"', 1)) == [(1, ["a", "b\nc", "d"]), (4, ['x"y', "z", ""])]
    with pytest.raises(RefError, match="line 2: unterminated"):
        list(ref_records('a,b\n"c,d\n', ",", '"', 1))
    with pytest.raises(RefError, match="line 1: text after"):
        list(ref_records('"a"x,b\n', ",", '"', 1))
