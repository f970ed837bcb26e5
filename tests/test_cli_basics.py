from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from streamsim import __version__
from streamsim.cli import app
from streamsim.store import Workspace


def test_help_lists_the_program() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_a_workspace_held_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    """DuckDB lets one process open a database file; a second `streamsim` says so, no traceback."""
    db = Workspace.resolve(tmp_path).db_path
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        result = CliRunner().invoke(app, ["--store", str(tmp_path), "datasets", "list"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert f"in use by process {holder.pid}" in result.output
    assert str(db) in result.output
    assert "--store DIR" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
time.sleep(60)
"""
