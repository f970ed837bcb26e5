"""CLI: `streamsim evaluate` — leave-one-out evaluation (the RecBole protocol) of one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from streamsim.commands import JsonOption, console, parse_pairs, workspace


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name in the store.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    protocol: Annotated[str, typer.Option("--protocol", help="Only 'loo' (RecBole LS).")] = "loo",
    max_len: Annotated[int, typer.Option("--max-len", min=1, help="History length L.")] = 50,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds 0..N-1 (mean ± std).")] = 1,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most training epochs.")] = 50,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Training batch size.")
    ] = 4096,
    patience: Annotated[
        int, typer.Option("--patience", min=0, help="Epochs without improvement before stopping.")
    ] = 5,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate.")] = 1e-3,
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
    as_json: JsonOption = False,
) -> None:
    """Leave-one-out evaluation with full ranking (RecBole protocol), with and without TTA."""
    import numpy as np

    from streamsim import health
    from streamsim.errors import StreamsimError
    from streamsim.leave_one_out import default_tta, evaluate_loo
    from streamsim.train import ModelSpec, TrainSpec

    if protocol != "loo":
        msg = f"unknown protocol {protocol!r}; expected one of ['loo']"
        raise StreamsimError(msg)
    if device != "cpu":
        import torch

        if not device.startswith("cuda"):
            msg = f"--device {device!r}: expected 'cpu' or 'cuda'"
            raise StreamsimError(msg)
        if not torch.cuda.is_available():
            msg = (
                f"--device {device!r}: this machine has no CUDA device (torch"
                f" {torch.__version__}); use --device cpu"
            )
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
                    console().print(warning, style="bold yellow")
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
