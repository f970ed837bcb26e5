"""CLI: `streamsim models list`, `streamsim train`, `streamsim evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from streamsim.commands import SetOption, console, parse_pairs, workspace


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
    models_app.command("list")(models_list)
    app.add_typer(models_app, name="models")
    app.command("train")(train)
    app.command("evaluate")(evaluate)


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
    console().print(table)


def train(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Scenario name or TOML path.")],
    model: Annotated[str | None, typer.Option("--model", help="Override the model.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the seed.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if cached.")] = False,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pretrain the scenario's model on its pretraining period (early stopping on validation)."""
    from rich.progress import BarColumn, Progress, TextColumn

    from streamsim import health
    from streamsim.pipeline import ensure_data
    from streamsim.scenario import load
    from streamsim.splits import resolve_split
    from streamsim.train import train as train_model

    overrides: dict[str, Any] = {}
    if model is not None:
        overrides["model.name"] = model
    if seed is not None:
        overrides["seed"] = seed
    overrides.update(parse_pairs(set_ or [], "--set", "train.patience=6"))
    sc = load(scenario, overrides)
    ws = workspace(ctx)
    con = ws.connect()
    info = ensure_data(con, sc)
    split = resolve_split(con, info.name, sc.split)
    out = console(stderr=as_json)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        console=out,
    ) as bar:
        task = bar.add_task("training", total=1.0, info="")

        def on_progress(p: dict[str, float]) -> None:
            if "epoch_end" in p:
                parts = [f"{k[6:]} {v:.4f}" for k, v in p.items() if k.startswith("train.")]
                terms = f" ({', '.join(parts)})" if parts else ""
                bar.console.print(
                    f"epoch {int(p['epoch'])}: train loss {p['train_loss']:.4f}{terms}, valid"
                    f" ndcg@10 {p['valid.ndcg@10']:.4f}, hr@10 {p['valid.hr@10']:.4f}"
                )
                summary = health.summary_line(p)  # the kept epoch's warning comes at the end
                if summary is not None:
                    bar.console.print(f"  {summary}", markup=False)
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
        "training_health": health.manifest_entry(ckpt.manifest["best"], ckpt.model_name),
    }
    warning = health.warning_line(ckpt.manifest["best"], ckpt.model_name)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        if warning is not None:
            typer.echo(warning, err=True)
    else:
        console().print(f"checkpoint {ckpt.path}")
        console().print(f"best epoch: {json.dumps(ckpt.manifest['best'], default=str)}")
        if warning is not None:
            console().print(warning, markup=False, style="bold yellow")


def evaluate(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name in the store.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    protocol: Annotated[str, typer.Option("--protocol", help="Only 'loo' (RecBole LS).")] = "loo",
    max_len: Annotated[int, typer.Option("--max-len", help="History length L.")] = 50,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds 0..N-1 (mean ± std).")] = 1,
    epochs: Annotated[int, typer.Option("--epochs")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 4096,
    patience: Annotated[int, typer.Option("--patience")] = 5,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    tta: Annotated[
        bool, typer.Option("--tta/--no-tta", help="Also score with test-time alignment.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config", "-c", help="Model option KEY=VALUE (repeatable), e.g. dropout=0.3"
        ),
    ] = None,
    resume_dir: Annotated[
        Path | None,
        typer.Option(
            "--resume-dir",
            help="Save the training state here after every epoch; rerun to continue a killed run.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Leave-one-out evaluation with full ranking (RecBole protocol), with and without TTA."""
    import numpy as np

    from streamsim import health
    from streamsim.errors import StreamsimError
    from streamsim.evaluate import default_tta, evaluate_loo
    from streamsim.scenario import ModelSpec, TrainSpec

    if protocol != "loo":
        msg = f"unknown protocol {protocol!r}; expected one of ['loo']"
        raise StreamsimError(msg)
    con = workspace(ctx).connect()
    options = {"max_len": max_len, **parse_pairs(config or [], "--config", "dropout=0.3")}
    spec = ModelSpec(name=model, config=tuple(sorted(options.items())))
    train_spec = TrainSpec(
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, eval_batch_size=4096
    )
    results = []
    for seed in range(seeds):
        result = evaluate_loo(
            con,
            dataset,
            spec,
            train_spec,
            seed=seed,
            tta=default_tta() if tta else None,
            device=device,
            resume_dir=resume_dir,
        )
        results.append(result)
        if not as_json:
            console().print(f"seed {seed}: {result['test']}")
            history: list[dict[str, float]] = result["history"]  # type: ignore[assignment]
            kept = result["best_epoch"]
            if isinstance(kept, int):
                warning = health.warning_line(history[kept], model)
                if warning is not None:
                    console().print(warning, markup=False, style="bold yellow")
    summary: dict[str, Any] = {
        "dataset": dataset,
        "model": model,
        "protocol": protocol,
        "max_len": max_len,
        "runs": results,
    }
    for part in ("test", "test_tta"):
        if part in results[0]:
            per_seed: list[dict[str, float]] = [r[part] for r in results]  # type: ignore[misc]
            summary[part] = {
                k: (  # mean and sample standard deviation over seeds (0 with one seed)
                    float(np.mean([m[k] for m in per_seed])),
                    float(np.std([m[k] for m in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0,
                )
                for k in per_seed[0]
            }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    for part in ("test", "test_tta"):
        if part in summary:
            line = ", ".join(f"{k} {m:.4f}±{s:.4f}" for k, (m, s) in summary[part].items())
            console().print(f"{part}: {line}")
