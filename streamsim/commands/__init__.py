"""One module per CLI command group; each exposes `register(app)`."""

from __future__ import annotations

import typer

from streamsim.store import Workspace


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace chosen by ``--store`` / ``$STREAMSIM_HOME`` for this invocation."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Workspace) else Workspace.resolve(None)
