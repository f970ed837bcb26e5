"""The `streamsim` command line: a thin typer layer over the Python API.

Each command parses its arguments, calls one `streamsim` function and renders the result. Command
groups live in `streamsim/commands/` (one file each). A `StreamsimError` raised anywhere below is
reported once, here, as ``error: <message>`` on stderr with exit code 1 and no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from streamsim import __version__
from streamsim.errors import StreamsimError
from streamsim.store import Workspace


class _Group(TyperGroup):
    """Turns a user-caused error into one ``error: ...`` line and exit code 1 for every
    subcommand: `StreamsimError` (bad input, missing data) and `OSError` (a path that cannot be
    read or written). Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StreamsimError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        except OSError as exc:  # a path the user gave: unwritable, a directory, missing
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_Group,
    help="Replay interaction logs through sequential recommenders with test-time adaptation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamsim {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            envvar="STREAMSIM_HOME",
            help="Workspace directory (DuckDB store, checkpoints, runs, dashboards).",
            show_default="~/.streamsim",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = Workspace.resolve(store)


def _register_commands() -> None:
    from streamsim.commands import (
        compare,
        datasets,
        detectors,
        evaluate,
        models,
        replay,
        runs,
        scenarios,
        sweep,
        train,
        tune,
    )

    modules = (
        datasets, scenarios, models, train, tune, evaluate, replay, sweep, runs, compare, detectors,
    )  # fmt: skip
    for module in modules:
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
