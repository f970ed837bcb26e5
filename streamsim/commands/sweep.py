"""CLI: `streamsim sweep` — a grid of seeds × settings, each cell a replay, on a pool or Ray."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from streamsim import commands as cli

if TYPE_CHECKING:
    from streamsim.sweep import CellResult


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0-4``, ``0,2,7`` or ``3`` as seeds; `StreamsimError` saying what was expected."""
    from streamsim.errors import StreamsimError

    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if last < first:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        msg = f"--seeds {text!r}: expected a range or list of integers such as 0-4 or 0,2,7"
        raise StreamsimError(msg) from None
    return tuple(dict.fromkeys(seeds))


def parse_grid(pairs: list[str]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``KEY=V1,V2`` strings -> (key, values); each value read as JSON, else as text."""
    from streamsim.errors import StreamsimError

    grid = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or not raw:
            msg = f"--set {pair!r}: expected KEY=V1,V2,... e.g. train.lr=0.001,0.003"
            raise StreamsimError(msg)
        values = []
        for text in raw.split(","):
            try:
                values.append(json.loads(text))
            except json.JSONDecodeError:
                values.append(text)
        grid.append((key, tuple(values)))
    return tuple(grid)


def sweep(
    ctx: typer.Context,
    scenario: cli.ScenarioOption,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Seeds to sweep: a range 0-4 or a list 0,2,7."),
    ] = None,
    policy: cli.PolicyOption = None,
    model: cli.ModelOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A grid axis KEY=V1,V2,... (repeatable; every combination is a cell),"
            " e.g. train.lr=0.001,0.003",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option("--executor", help="local: worker processes on this machine; ray: Ray tasks."),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="ray: an existing cluster ('auto'); default: start one."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Cells run at once.")] = 2,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Torch threads per cell (default cores/workers)."),
    ] = None,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="Also write one dashboard per group of cells that replayed the same events.",
        ),
    ] = False,
    as_json: cli.JsonOption = False,
) -> None:
    """Run a grid of seeds x settings of one scenario, each cell an independent replay stored
    as `streamsim replay` stores it; a rerun skips finished cells and resumes the rest."""
    from streamsim.errors import StreamsimError
    from streamsim.sweep import SweepSpec, cell_summaries, run_sweep, to_json, write_dashboards

    if executor not in ("local", "ray"):
        msg = f"--executor {executor!r}: expected 'local' or 'ray'"
        raise StreamsimError(msg)
    fixed = cli.scenario_overrides(policies=policy, model=model)
    spec = SweepSpec(
        scenario=scenario,
        seeds=parse_seeds(seeds) if seeds else (),
        grid=parse_grid(set_ or []),
        fixed=tuple(fixed.items()),
        executor=executor,  # type: ignore[arg-type]
        workers=workers,
        address=address,
        threads=threads,
    )
    ws = cli.workspace(ctx)
    con = ws.connect()
    err = cli.console(stderr=True)

    def progress(c: CellResult) -> None:
        what = {
            "complete": f"{len(c.run_ids)} runs in {c.seconds:.0f} s",
            "skipped": "finished earlier",
            "failed": f"FAILED: {c.error}",
        }[c.status]
        err.print(f"cell {c.cell.index} ({c.cell.label}): {what}", highlight=False)

    result = run_sweep(con, ws, spec, progress=progress)
    rows = cell_summaries(con, result)
    pages = write_dashboards(con, result) if dashboard else []
    for page in pages:
        err.print(f"dashboard: {page}", highlight=False)
    if as_json:
        out_json = {**to_json(result), "summary": rows, "dashboards": [str(p) for p in pages]}
        typer.echo(json.dumps(out_json, indent=2, default=str))
    else:
        out = cli.console()
        out.print(summary_table(rows, len(result.cells)))
        out.print(f"sweep directory: {result.directory}", highlight=False)
    if result.failed:
        msg = f"{len(result.failed)} of {len(result.cells)} cells failed (see above)"
        raise StreamsimError(msg)


def summary_table(rows: list[dict[str, Any]], n_cells: int) -> Table:
    def cell(row: dict[str, Any], metric: str) -> str:
        low, high = row[f"{metric}_ci"]
        ci = "" if math.isnan(low) else f" [{low:.4f}, {high:.4f}]"
        return f"{row[metric]:.4f}{ci}"

    table = Table(title=f"sweep: {n_cells} cells; means over seeds with 95% t-intervals")
    for name in ("setting", "policy", "seeds", "failed", "NDCG@10", "HR@10"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(
            row["setting"], row["policy"], str(row["seeds"]), str(row["failed"]),
            cell(row, "ndcg@10"), cell(row, "hr@10"),
        )  # fmt: skip
    return table
