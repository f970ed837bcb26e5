"""CLI: `streamsim replay` — one call to `streamsim.pipeline.run_scenario`, then its tables."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from streamsim import commands as cli

if TYPE_CHECKING:  # the command imports the engine only when it runs (a fast `--help`)
    from streamsim.compare import Comparison
    from streamsim.detection import DetectorReport
    from streamsim.report import Forgetting, RunSummary


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    ctx: typer.Context,
    scenario: cli.ScenarioOption,
    policy: cli.PolicyOption = None,
    model: cli.ModelOption = None,
    seed: cli.SeedOption = None,
    max_events: Annotated[
        int | None,
        typer.Option("--max-events", min=1, help="Replay only the first N events."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep finished runs of the same settings; continue unfinished ones.",
        ),
    ] = False,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Write the HTML dashboard.")
    ] = True,
    set_: cli.SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="Under torchrun: cut none/reset replays into time chunks across the ranks"
            " (rank 0 writes; other policies run on rank 0).",
        ),
    ] = False,
) -> None:
    """Replay a scenario: data, pretraining (cached), then one run per adaptation policy."""
    from contextlib import nullcontext

    from streamsim.commands.compare import render_comparison
    from streamsim.commands.progress_view import progress_view
    from streamsim.errors import StreamsimError
    from streamsim.pipeline import run_scenario
    from streamsim.scenario import load

    overrides = cli.scenario_overrides(
        policies=policy, model=model, seed=seed, max_events=max_events, pairs=set_
    )
    sc = load(scenario, overrides)
    ws = cli.workspace(ctx)
    if distributed:
        from streamsim.distributed import init, run_scenario_distributed

        if resume:
            msg = "--distributed: a distributed replay always starts new runs; drop --resume"
            raise StreamsimError(msg)
        rank, _ = init()
        view = progress_view(cli.console(stderr=as_json)) if rank == 0 else nullcontext(None)
        with view as progress:
            found = run_scenario_distributed(ws, sc, dashboard=dashboard, progress=progress)
        if found is None:  # not rank 0: rank 0 reports
            return
        result = found
    else:
        con = ws.connect()
        with progress_view(cli.console(stderr=as_json)) as progress:
            result = run_scenario(
                con, ws, sc, resume=resume, dashboard=dashboard, progress=progress
            )
    warning = result.health_warning
    if as_json:
        typer.echo(json.dumps(result.to_json(), default=str, indent=2))
        if warning is not None:
            typer.echo(warning, err=True)
        return
    out = cli.console()
    if warning is not None:
        out.print(warning, style="bold yellow")
    for period in result.prepared.periods:
        out.print(f"split: {period.line()}")
    out.print(cold_line(result.prepared.cold))
    out.print(summary_table(sc.name, result.summaries, result.comparison))
    for s in result.summaries:
        for det in s.detectors:
            out.print(detector_line(s.policy, det))
    for s in result.summaries:
        if s.tta_skipped_steps:
            out.print(skipped_line(s.policy, s.tta_skipped_steps))
    if result.comparison is not None:
        out.print(render_comparison(result.comparison))
    for line in result.reading:
        out.print(f"reading: {line}")
    if result.dashboard is not None:
        out.print(f"dashboard: {result.dashboard}")


def summary_table(
    scenario: str, summaries: tuple[RunSummary, ...], comparison: Comparison | None = None
) -> Table:
    table = Table(title=f"{scenario}: prequential replay, full-catalogue ranking")
    base = summaries[0].policy if summaries else ""
    columns = (
        "run", "events", "HR@10", "NDCG@10", f"Δ NDCG@10 vs {base} [95% CI]", "MRR@10",
        "NDCG@10 by quartile", "step ‖Δθ‖/‖θ‖", "top-10 changed", "forgetting", "alarms",
        "events/s",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=col != "run")
    pairs = {p.run_id: p for p in comparison.pairs} if comparison is not None else {}
    for s in summaries:
        m = s.metrics
        pair = pairs.get(s.run_id)
        diff = (
            f"{pair.mean_diff:+.4f} [{pair.ci_low:+.4f}, {pair.ci_high:+.4f}]"
            if pair is not None
            else "-"
        )
        table.add_row(
            f"{s.model}/{s.policy}" + (" (diagnostic)" if s.diagnostic else ""),
            str(s.n_events),
            f"{m['hr@10']:.4f}",
            f"{m['ndcg@10']:.4f}",
            diff,
            f"{m['mrr@10']:.4f}",
            " ".join(f"{q:.4f}" for q in s.quartiles),
            "-" if s.step.step_rel is None else f"{s.step.step_rel:.1e}",
            "-" if s.step.top10_changed is None else f"{s.step.top10_changed:.1%}",
            forgetting_cell(s.forgetting),
            str(sum(d.alarms for d in s.detectors)),
            f"{s.events_per_s:.0f}",
        )
    table.caption = (
        "Δ NDCG@10: paired per-day difference from the first run, moving-block bootstrap CI."
        " step: mean relative size of the test-time step per micro-batch (- : no step) and the"
        " share of top-10 lists it changed. forgetting: NDCG@10 lost on the pre-replay probe by"
        " the end of the replay (θ₀ minus final weights, ± its standard error; > 0 is worse)"
    )
    return table


def forgetting_cell(f: Forgetting) -> str:
    if f.last is None:
        return "-"
    se = f.se_last
    return f"{f.last:+.4f}" + ("" if se is None or se != se else f" ± {se:.4f}")


def skipped_line(policy: str, n: int) -> str:
    return (
        f"warning: policy {policy!r} skipped {n} test-time steps whose loss or gradient was not"
        " finite (the adaptation diverged; lower tta_lr)"
    )


def cold_line(cold: dict[str, int]) -> str:
    n = max(cold.get("replay_events", 0), 1)
    users, items = cold.get("events_unseen_user", 0) / n, cold.get("events_unseen_item", 0) / n
    return (
        f"replay period: {cold.get('replay_events', 0)} events; unseen before the cut:"
        f" {cold.get('unseen_users', 0)} users ({users:.1%} of events),"
        f" {cold.get('unseen_items', 0)} items ({items:.1%} of events)"
    )


def detector_line(policy: str, d: DetectorReport) -> str:
    line = f"  [{policy}] {d.detector}({d.signal}): {d.alarms} alarms"
    if d.score is None:
        return line
    if d.alarms == 0:
        return line + f"; missed all {d.score.n_drifts} ground-truth drifts"

    def scored(s: Any) -> str:
        return (
            f"detected {s.detected}/{s.n_drifts} drifts (missed {s.missed_rate:.0%}), delay"
            f" {s.delay_events:.0f} events / {s.delay_hours:.1f} h,"
            f" {s.far_per_10k:.1f} false alarms/10k, MTFA {s.mtfa_events:.0f} events"
        )

    line += f"; {scored(d.score)}  | periodic baseline, same alarm count: {scored(d.periodic)}"
    if d.random is not None:
        line += (
            f"  | random baseline: detected {d.random.detected}/{d.random.n_drifts},"
            f" {d.random.far_per_10k:.1f} false alarms/10k"
        )
    return line
