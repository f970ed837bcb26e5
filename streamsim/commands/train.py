"""CLI: `streamsim train` — one call to `streamsim.pipeline.prepare` (data, split, checkpoint)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from streamsim import commands as cli


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    ctx: typer.Context,
    scenario: cli.ScenarioOption,
    model: cli.ModelOption = None,
    seed: cli.SeedOption = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if cached.")] = False,
    set_: cli.SetOption = None,
    as_json: cli.JsonOption = False,
) -> None:
    """Pretrain the scenario's model on its pretraining period (early stopping on validation)."""
    from streamsim import health
    from streamsim.commands.progress_view import progress_view
    from streamsim.pipeline import prepare
    from streamsim.scenario import check, load

    sc = load(scenario, cli.scenario_overrides(model=model, seed=seed, pairs=set_))
    check(sc)
    ws = cli.workspace(ctx)
    con = ws.connect()
    with progress_view(cli.console(stderr=as_json)) as progress:
        prepared = prepare(con, ws, sc, progress=progress, force=force)
    ckpt = prepared.checkpoint
    result = {
        "checkpoint": str(ckpt.path),
        "hash": ckpt.hash,
        "model": ckpt.model_name,
        "best": ckpt.manifest["best"],
        "training_health": health.manifest_entry(ckpt.manifest["best"], ckpt.model_name),
        "periods": [dataclasses.asdict(p) for p in prepared.periods],
    }
    warning = health.warning_line(ckpt.manifest["best"], ckpt.model_name)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        if warning is not None:
            typer.echo(warning, err=True)
        return
    for period in prepared.periods:
        cli.console().print(f"split: {period.line()}")
    cli.console().print(f"checkpoint {ckpt.path}")
    cli.console().print(f"best epoch: {json.dumps(ckpt.manifest['best'], default=str)}")
    if warning is not None:
        cli.console().print(warning, style="bold yellow")
