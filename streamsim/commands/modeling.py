"""CLI: `streamsim models list`, `streamsim train`, `streamsim evaluate`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streamsim.commands import workspace

console = Console()


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
    models_app.command("list")(models_list)
    app.add_typer(models_app, name="models")
    app.command("train")(train)


def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
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
    console.print(table)


def train(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Scenario name or TOML path.")],
    model: Annotated[str | None, typer.Option("--model", help="Override the model.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the seed.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pretrain the scenario's model on its pretraining period (early stopping on validation)."""
    from rich.progress import BarColumn, Progress, TextColumn

    from streamsim.pipeline import ensure_data
    from streamsim.scenario import load
    from streamsim.splits import resolve_split
    from streamsim.train import train as train_model

    overrides: dict[str, Any] = {}
    if model is not None:
        overrides["model.name"] = model
    if seed is not None:
        overrides["seed"] = seed
    sc = load(scenario, overrides)
    ws = workspace(ctx)
    con = ws.connect()
    info = ensure_data(con, sc)
    split = resolve_split(con, info.name, sc.split)
    out = Console(stderr=True) if as_json else console
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        console=out,
    ) as bar:
        task = bar.add_task("training", total=1.0, info="")

        def on_progress(p: dict[str, float]) -> None:
            if "epoch_end" in p:
                bar.console.print(
                    f"epoch {int(p['epoch'])}: train loss {p['train_loss']:.4f}, valid"
                    f" ndcg@10 {p['valid.ndcg@10']:.4f}, hr@10 {p['valid.hr@10']:.4f}"
                )
            else:
                bar.update(
                    task,
                    completed=p["done"],
                    description=f"epoch {int(p['epoch'])}",
                    info=f"loss {p['loss']:.3f}  {p['events_per_s']:.0f} examples/s",
                )

        ckpt = train_model(
            con,
            info.name,
            split,
            sc.model,
            sc.train,
            seed=sc.seed,
            workspace=ws,
            progress=on_progress,
            force=force,
        )
    result = {
        "checkpoint": str(ckpt.path),
        "hash": ckpt.hash,
        "model": ckpt.model_name,
        "best": ckpt.manifest["best"],
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        console.print(f"checkpoint {ckpt.path}")
        console.print(f"best epoch: {json.dumps(ckpt.manifest['best'], default=str)}")
