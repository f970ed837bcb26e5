"""CLI: `streamsim models list` — the registered models."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from streamsim.commands import JsonOption, add_group, console


def register(app: typer.Typer) -> None:
    add_group(app, "models", "Registered models.", list=models_list)


def models_list(
    as_json: JsonOption = False,
) -> None:
    """List the registered models and whether they have a test-time loss."""
    import models

    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "description": e.description,
            "test_time_loss": e.cls.has_test_time_loss,
            "trainable": e.cls.trainable,
        }
        for e in models.list_models()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="models")
    for col in ("name", "test-time loss", "trainable", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            "yes" if r["test_time_loss"] else "no",
            "yes" if r["trainable"] else "counts",
            r["description"],
        )
    console().print(table)
