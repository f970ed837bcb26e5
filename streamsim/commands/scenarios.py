"""CLI: `streamsim scenarios list|show` — the bundled and user scenario files."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from streamsim.commands import JsonOption, add_group


def register(app: typer.Typer) -> None:
    add_group(
        app, "scenarios", "Shipped and user scenario files.", list=scenarios_list,
        show=scenarios_show,
    )  # fmt: skip


def scenarios_list(
    as_json: JsonOption = False,
) -> None:
    """List the bundled scenarios (name and one-line description)."""
    from streamsim.scenario import list_bundled

    rows = list_bundled()
    if as_json:
        typer.echo(json.dumps([{"name": n, "description": d} for n, d in rows], indent=2))
        return
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        typer.echo(f"{name.ljust(width)}  {desc}")


def scenarios_show(
    name_or_path: Annotated[str, typer.Argument(help="Bundled scenario name or a TOML path.")],
    as_json: JsonOption = False,
) -> None:
    """Show a scenario's resolved values, defaults included."""
    from streamsim.scenario import load, to_dict

    resolved = to_dict(load(name_or_path))
    if as_json:
        typer.echo(json.dumps(resolved, indent=2, sort_keys=True))
        return
    _echo_tree(resolved, 0)


def _echo_tree(value: object, indent: int) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(sub, dict | list) and sub:
                typer.echo(f"{pad}{key}:")
                _echo_tree(sub, indent + 1)
            else:
                typer.echo(f"{pad}{key}: {json.dumps(sub)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                typer.echo(f"{pad}-")
                _echo_tree(item, indent + 1)
            else:
                typer.echo(f"{pad}- {json.dumps(item)}")
