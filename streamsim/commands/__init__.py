"""One module per CLI command group; each exposes `register(app)`."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from streamsim.store import Workspace


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace chosen by ``--store`` / ``$STREAMSIM_HOME`` for this invocation."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Workspace) else Workspace.resolve(None)


def console(*, stderr: bool = False) -> Console:
    """A rich console for command output.

    Markup is off, so user-controlled strings (run ids, policy names such as ``[none]``, dataset
    names) print as they are. Output that is not a terminal (a pipe, a log file, CI) is laid out
    200 columns wide instead of rich's 80, so the tables stay readable there.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, width=width, markup=False, highlight=False)
