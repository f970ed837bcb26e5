"""CLI: `streamsim detectors` — the detector study over generated streams
(`streamsim.detector_study`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from streamsim import commands as cli

if TYPE_CHECKING:
    from streamsim.detector_study import StudyRow


def register(app: typer.Typer) -> None:
    app.command("detectors")(detectors)


def detectors(
    ctx: typer.Context,
    scenario: Annotated[
        list[str],
        typer.Option("--scenario", "-s", help="Synthetic scenarios (repeatable)."),
    ],
    seeds: Annotated[
        str, typer.Option("--seeds", help="Generator seeds, e.g. 0-9 (each a new stream).")
    ] = "0-9",
    model: Annotated[
        str, typer.Option("--model", help="The frozen recommender whose signals are watched.")
    ] = "popularity",
    set_: cli.SetOption = None,
    as_json: cli.JsonOption = False,
) -> None:
    """Score every detector of the scenarios over K generated streams against the ground truth
    and against dummy detectors firing as often (means with 95% CIs, Wilcoxon + Holm)."""
    from streamsim.detector_study import run_seed, summarize
    from streamsim.errors import StreamsimError

    lo, sep, hi = seeds.partition("-")
    if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
        msg = f"--seeds {seeds!r}: expected N or N-M with N <= M, e.g. 0-9"
        raise StreamsimError(msg)
    overrides = cli.parse_pairs(set_ or [], "--set", "replay.batch_events=128")
    root = cli.workspace(ctx).subdir("detector-study")
    scores = [
        s
        for name in scenario
        for seed in range(int(lo), int(hi if sep else lo) + 1)
        for s in run_seed(root, name, seed, model=model, overrides=overrides)
    ]
    rows = summarize(scores)
    if as_json:
        typer.echo(json.dumps([{**asdict(r), "verdict": r.verdict} for r in rows], indent=2))
        return
    table = Table(title=f"detector study: {model}'s signals, seeds {seeds}")
    columns = ("scenario", "detector", "seeds", "alarms/seed", "missed", "false/10k",
               "delay (events)", "F1", "F1 periodic", "F1 random", "p periodic", "p random",
               "verdict")  # fmt: skip
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("scenario", "detector", "verdict") else "right"
        )
    for r in rows:
        table.add_row(
            r.scenario, r.detector, str(r.seeds), f"{r.alarms:.1f}", _cell(r, "missed_rate"),
            _cell(r, "far_per_10k", ".2f"), _cell(r, "delay_events", ".0f"), _cell(r, "f1"),
            f"{r.f1_periodic:.3f}", f"{r.f1_random:.3f}", f"{r.p_periodic:.3g}",
            f"{r.p_random:.3g}", r.verdict,
        )  # fmt: skip
    cli.console().print(table)


def _cell(row: StudyRow, metric: str, fmt: str = ".3f") -> str:
    """``mean [low, high]`` of a metric over the seeds; "-" when no seed has it."""
    mean, low, high = row.means[metric]
    if mean != mean:
        return "-"
    return f"{mean:{fmt}}" + ("" if low != low else f" [{low:{fmt}}, {high:{fmt}}]")
