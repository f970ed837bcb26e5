"""CLI: `streamsim dashboard` — one self-contained HTML dashboard for stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamsim.commands import workspace


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Run ids; the first is the baseline.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="HTML file (default: <workspace>/dashboards/)."),
    ] = None,
) -> None:
    """Write one self-contained HTML dashboard (works offline) for the runs."""
    from dashboards.page import default_path, write_dashboard

    ws = workspace(ctx)
    con = ws.connect(read_only=True)
    try:
        path = output if output is not None else default_path(ws.subdir("dashboards"), runs)
        written = write_dashboard(con, runs, path)
    finally:
        con.close()
    typer.echo(str(written))
