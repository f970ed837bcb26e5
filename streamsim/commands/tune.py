"""CLI: `streamsim tune` — test-time learning rates swept on the validation window."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from streamsim import commands as cli

RULES = ("model", "placebo", "entropy", "selfsup", "oracle")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)


def tune(
    ctx: typer.Context,
    scenario: cli.ScenarioOption,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule", "-r", help=f"Step rules to sweep (repeatable; default all): {list(RULES)}."
        ),
    ] = None,
    steps: Annotated[
        list[int] | None,
        typer.Option("--steps", min=1, help="Steps per micro-batch (repeatable; default 1, 5)."),
    ] = None,
    model: cli.ModelOption = None,
    seed: cli.SeedOption = None,
    set_: cli.SetOption = None,
    as_json: cli.JsonOption = False,
) -> None:
    """Sweep reset test-time adaptation over learning rates and steps on the validation window
    (never the replay period); the rate a policy with tta_lr = "auto" gets is the best here."""
    from streamsim.errors import StreamsimError
    from streamsim.pipeline import tune as run_tune
    from streamsim.scenario import load
    from streamsim.tuning import STEPS

    rules = list(rule or RULES)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        msg = f"--rule {unknown[0]!r}: expected one of {list(RULES)}"
        raise StreamsimError(msg)
    sc = load(scenario, cli.scenario_overrides(model=model, seed=seed, pairs=set_))
    ws = cli.workspace(ctx)
    prepared, sweeps = run_tune(ws.connect(), ws, sc, rules=rules, steps=tuple(steps or STEPS))
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in sweeps], indent=2))
        return
    out = cli.console()
    window = prepared.split.valid
    for s in sweeps:
        table = Table(
            title=f"{sc.name} / {sc.model.name}: reset with the {s.rule!r} step on the validation"
            f" window ({s.n_events} events, replay indices {window.start}..{window.stop - 1});"
            f" frozen NDCG@10 {s.frozen_ndcg10:.4f}",
            title_justify="left",
        )
        for col in ("steps", "lr", "NDCG@10", "Δ vs frozen ± SE", "‖Δθ‖/‖θ‖", "skipped", ""):
            table.add_column(col, justify="right")
        chosen = {s.best(m) for m in sorted({c.steps for c in s.cells})}
        for c in s.cells:
            table.add_row(
                str(c.steps),
                f"{c.lr:g}",
                f"{c.ndcg10:.4f}",
                f"{c.diff:+.4f} ± {c.diff_se:.4f}",
                "-" if c.step_rel is None else f"{c.step_rel:.1e}",
                str(c.skipped_steps),
                "chosen" if c in chosen else "",
            )
        out.print(table)
    label_free = [s for s in sweeps if s.rule in ("model", "entropy", "selfsup")]
    if label_free:
        m = min(c.steps for c in label_free[0].cells)
        best, cell = max(((s, s.best(m)) for s in label_free), key=lambda pair: pair[1].ndcg10)
        verdict = "above" if cell.diff > 2 * cell.diff_se else "not above"
        out.print(
            f"best label-free rule on validation ({m} step(s) per micro-batch): {best.rule!r} at"
            f" lr {cell.lr:g}: {cell.diff:+.4f} NDCG@10 vs frozen, {verdict} it by two standard"
            " errors"
        )
