"""CLI commands: ``streamsim scenarios list|show``."""

from __future__ import annotations

import json

import typer

from streamsim import scenario as scenario_mod


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    group = typer.Typer(help="Shipped and user scenario files.", no_args_is_help=True)

    @group.command("list")
    def list_cmd(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """List the bundled scenarios (name and one-line description)."""
        rows = scenario_mod.list_bundled()
        if as_json:
            typer.echo(json.dumps([{"name": n, "description": d} for n, d in rows], indent=2))
            return
        width = max((len(n) for n, _ in rows), default=0)
        for name, desc in rows:
            typer.echo(f"{name.ljust(width)}  {desc}")

    @group.command("show")
    def show_cmd(
        name_or_path: str = typer.Argument(..., help="Bundled scenario name or a TOML path."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Show a scenario's resolved values, defaults included."""
        resolved = scenario_mod.to_dict(scenario_mod.load(name_or_path))
        if as_json:
            typer.echo(json.dumps(resolved, indent=2, sort_keys=True))
            return
        _echo_tree(resolved, 0)

    app.add_typer(group, name="scenarios")


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
