"""The CLI's command groups, one module each; each exposes `register(app)`.

Every command has the same shape: parse its options, call one `streamsim` function, render
what it returns. Shared here: the workspace of the invocation, the console, ``--set`` parsing
and the scenario overrides the scenario-loading commands have in common.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console, Group
from rich.table import Table

from streamsim.errors import StreamsimError
from streamsim.store import Workspace

# the options of the commands that load a scenario
ScenarioOption = Annotated[
    str, typer.Option("--scenario", "-s", help="Scenario name or TOML path.")
]
ModelOption = Annotated[str | None, typer.Option("--model", help="Override the model.")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Override the seed.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
PolicyOption = Annotated[
    list[str] | None,
    typer.Option("--policy", "-p", help="Replay only these policies (repeatable)."),
]
# `--set KEY=VALUE` of the commands that load a scenario (`parse_pairs` reads it)
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a scenario value KEY=VALUE (repeatable), e.g. train.patience=6"
    ),
]


def add_group(app: typer.Typer, name: str, help: str, **commands: Callable[..., None]) -> None:
    """A command group ``streamsim NAME SUB`` with one subcommand per keyword (``list=fn``)."""
    group = typer.Typer(help=help, no_args_is_help=True)
    for sub, fn in commands.items():
        group.command(sub)(fn)
    app.add_typer(group, name=name)


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace chosen by ``--store`` / ``$STREAMSIM_HOME`` for this invocation."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Workspace) else Workspace.resolve(None)


@contextmanager
def reading(ctx: typer.Context) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the invocation's workspace, closed when the block ends (a
    read-only command never blocks a writer for longer than it reads)."""
    con = workspace(ctx).connect(read_only=True)
    try:
        yield con
    finally:
        con.close()


def console(*, stderr: bool = False) -> Console:
    """A rich console for command output.

    Markup is off, so user-controlled strings (run ids, policy names such as ``[none]``, dataset
    names) print as they are. Output that is not a terminal (a pipe, a log file, CI) is laid out
    200 columns wide instead of rich's 80, so the tables stay readable there.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return FiguresConsole(stderr=stderr, width=width, markup=False, highlight=False)


_FIGURE = re.compile(r"^(?=.*\d)[\s\d.,eE+\-−±%\[\]/]+$|^-$|^nan$")  # numbers, CIs, lists


def keep_figures(renderable: Any) -> Any:
    """Tables whose figures are never cut: a column whose every cell is a number (or a number
    with its CI, or '-') gets a minimum width of its widest cell and does not wrap, so a narrow
    terminal wraps or folds the name columns instead of printing ``0.…``. Groups are walked."""
    if isinstance(renderable, Group):
        for part in renderable.renderables:
            keep_figures(part)
    if isinstance(renderable, Table):
        for column in renderable.columns:
            cells = [str(c) for c in column._cells]
            widest = max([len(c) for c in cells] + [len(str(column.header))])
            if cells and all(_FIGURE.match(c.strip()) for c in cells):
                column.no_wrap = True
                column.min_width = widest
            else:
                column.overflow = "fold"
                column.min_width = min(widest, NAME_MIN)
    return renderable


class FiguresConsole(Console):
    """A console whose tables keep their figures whole (`keep_figures`): a table that cannot fit
    the terminal even with its name columns folded is printed at the width it needs (the
    terminal wraps the long lines) instead of being cut."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not any(isinstance(o, (Table, Group)) for o in objects) or "width" in kwargs:
            super().print(*objects, **kwargs)
            return
        for o in objects:
            keep_figures(o)
            need = max((_needed_width(t) for t in _tables(o)), default=0)
            if need <= self.width:
                super().print(o, **kwargs)
                continue
            width, self.width = self.width, need  # print's own width is capped at the console's
            try:
                super().print(o, crop=False, **kwargs)
            finally:
                self.width = width


def parse_pairs(pairs: list[str], flag: str, example: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> a dict; values read as JSON (numbers, true/false) else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            msg = f"{flag} {pair!r}: expected KEY=VALUE, e.g. {example}"
            raise StreamsimError(msg)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def scenario_overrides(
    *,
    policies: list[str] | None = None,
    model: str | None = None,
    seed: int | None = None,
    max_events: int | None = None,
    pairs: list[str] | None = None,
) -> dict[str, Any]:
    """The flat overrides `streamsim.scenario.load` takes, from the common options."""
    out: dict[str, Any] = {}
    if policies:
        out["policies"] = list(policies)
    if model is not None:
        out["model.name"] = model
    if seed is not None:
        out["seed"] = seed
    if max_events is not None:
        out["replay.max_events"] = max_events
    out.update(parse_pairs(pairs or [], "--set", "train.patience=6"))
    return out


def _tables(renderable: Any) -> list[Table]:
    if isinstance(renderable, Group):
        return [t for part in renderable.renderables for t in _tables(part)]
    return [renderable] if isinstance(renderable, Table) else []


NAME_MIN = 16  # a folded name column is given at least this many characters


def _needed_width(table: Table) -> int:
    """Columns of figures at their widest cell, name columns folded to at most `NAME_MIN`
    characters, plus the borders and padding."""
    total = 1
    for column in table.columns:
        widest = max([len(str(c)) for c in column._cells] + [len(str(column.header))])
        total += (widest if column.no_wrap else min(widest, NAME_MIN)) + 3
    return total
