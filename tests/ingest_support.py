"""Helpers of the ingest hardening tests: whole-store snapshots and one-line CLI failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from typer.testing import CliRunner

from streamsim.cli import app
from streamsim.store import quote_ident

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(con: duckdb.DuckDBPyConnection) -> Snapshot:
    """Every table of the connection's databases (temporary ones too) with all its rows, sorted.

    Equal snapshots before and after a failed command prove it changed nothing, including that it
    left no new table behind.
    """
    tables = con.execute(
        "SELECT database_name, schema_name, table_name FROM duckdb_tables()"
        " WHERE database_name NOT IN ('system') ORDER BY ALL"
    ).fetchall()
    out: Snapshot = {}
    for db, schema, table in tables:
        name_sql = ".".join(quote_ident(str(x)) for x in (db, schema, table))
        out[f"{db}.{schema}.{table}"] = con.execute(
            f"SELECT * FROM {name_sql} ORDER BY ALL"
        ).fetchall()
    return out


def store_snapshot(root: Path) -> Snapshot:
    """`snapshot` of a workspace's database file, read with a connection of its own."""
    con = duckdb.connect(str(root / "streamsim.duckdb"), read_only=True)
    try:
        return snapshot(con)
    finally:
        con.close()


def store_text(con: duckdb.DuckDBPyConnection) -> str:
    """All values of all tables as one string (to look for data that must not be there)."""
    return "\n".join(repr(rows) for rows in snapshot(con).values())


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``streamsim ARGS`` in-process: (exit code, stdout, stderr); an escaped exception fails."""
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        msg = f"streamsim {args} raised {result.exception!r}"
        raise AssertionError(msg) from result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_error_line(code: int, stdout: str, stderr: str, *, match: str = "") -> str:
    """A user error: exit 1, nothing on stdout, exactly one ``error: ...`` line on stderr."""
    lines = stderr.splitlines()
    assert code == 1, (code, stdout, stderr)
    assert stdout == "", stdout
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    assert match in lines[0], (match, lines[0])
    return lines[0]


def hostile_names(sentinel: Path, secret: Path) -> list[str]:
    """Column names that try SQL injection: stacked statements, ``COPY ... TO`` into `sentinel`,
    ``ATTACH`` of a database there, and reading `secret` into the store."""
    out = str(sentinel / "pwned.csv")
    return [
        f'x" FROM (SELECT 1 AS "x"); COPY (SELECT 42) TO \'{out}\'; --',
        f"x'; COPY (SELECT 42) TO '{out}'; --",
        f"x\"); COPY (SELECT 42) TO '{out}' (FORMAT csv); SELECT (\"x",
        f"x\"; ATTACH '{sentinel / 'evil.duckdb'}' AS evil; CREATE TABLE evil.t (a INT); --",
        f"x\", (SELECT content FROM read_text('{secret}')) AS \"y",
        f"x' || (SELECT content FROM read_text('{secret}')) || '",
        f"{out}",
        '"',
        '""',
        "\\",
        "$name",
        "?",
    ]
