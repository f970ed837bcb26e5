"""CLI: `streamsim runs list|show|export` — the stored replay runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from streamsim.commands import JsonOption, add_group, console, workspace


def register(app: typer.Typer) -> None:
    add_group(
        app, "runs", "Stored replay runs.", list=runs_list, show=runs_show, export=runs_export
    )


def runs_list(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """List stored runs (a run that was killed shows as 'interrupted': rerun with --resume)."""
    from streamsim.runs import list_runs

    rows = list_runs(workspace(ctx).connect())
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table(title="runs")
    for col in ("run_id", "scenario", "model", "policy", "seed", "status", "n_events", "events/s"):
        table.add_column(col)
    for r in rows:
        eps = f"{r['events_per_s']:.0f}" if r["events_per_s"] else ""
        table.add_row(
            r["run_id"], r["scenario"], r["model"], r["policy"], str(r["seed"]), r["status"],
            str(r["n_events"]), eps,
        )  # fmt: skip
    console().print(table)


def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (see `streamsim runs list`).")],
    as_json: JsonOption = False,
) -> None:
    """Show a run: its manifest, overall metrics, quartiles and detectors."""
    from streamsim.commands.replay import detector_line, forgetting_cell, skipped_line
    from streamsim.report import summarize
    from streamsim.runs import data_warning, run_info
    from streamsim.user_shift import score_user_shift

    con = workspace(ctx).connect()
    info = run_info(con, run_id)
    summary = summarize(con, run_id)
    shift = score_user_shift(con, run_id)
    warning = data_warning(con, run_id)
    if as_json:
        extra: dict[str, Any] = {
            "user_shift": shift.to_json() if shift is not None else None,
            "data_warning": warning,
        }
        typer.echo(json.dumps({**info, **summary.to_json(), **extra}, default=str, indent=2))
        return
    out = console()
    if warning is not None:
        out.print(f"warning: {warning}", style="bold yellow")
    for key in (
        "run_id", "scenario", "dataset", "model", "policy", "seed", "status", "n_events",
        "events_per_s", "started", "finished",
    ):  # fmt: skip
        out.print(f"{key:>14}: {info[key]}")
    for key, value in summary.metrics.items():
        out.print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    out.print(f"{'quartiles':>14}: " + " ".join(f"{q:.4f}" for q in summary.quartiles))
    h = summary.health
    if h.rec_gini is not None:
        out.print(
            f"{'health':>14}: top-10 coverage {h.coverage:.4f}, Gini {h.rec_gini:.4f},"
            f" top-1 entropy {h.top1_entropy:.3f} nats (per micro-batch means)"
        )
    if summary.tta_skipped_steps:
        out.print(skipped_line(info["policy"], summary.tta_skipped_steps))
    st = summary.step
    if st.n_batches:
        effects = (
            ""
            if st.top10_changed is None
            else f", {st.top10_changed:.1%} of top-10 lists and {st.rank_changed:.1%} of target"
            f" ranks changed, {st.hit10_flips} hit@10 flips"
        )
        out.print(
            f"{'step size':>14}: ||Δθ||/||θ|| {st.step_rel:.2e} (||Δθ|| {st.step_norm:.2e}) per"
            f" micro-batch over {st.n_batches} steps{effects}"
        )
    if summary.diagnostic:
        out.print(f"{'diagnostic':>14}: the oracle step reads the targets it is scored on")
    if summary.tta_resets:
        n = summary.tta_resets
        out.print(f"{'tta resets':>14}: {n} (periodic, drift-triggered or oracle)")
    f = summary.forgetting
    if f.points:
        out.print(
            f"{'forgetting':>14}: {forgetting_cell(f)} at the end, {f.max:+.4f} at most,"
            f" over {f.points} probe points (NDCG@10 on the pre-replay probe, θ₀ minus now)"
        )
        if f.top1_flip_last is not None:
            out.print(
                f"{'top-1 flips':>14}: {f.top1_flip_last:.1%} of the probe's top-1 items"
                " differ from θ₀'s at the end"
            )
    for det in summary.detectors:
        out.print(detector_line(info["policy"], det))
    if shift is not None:
        out.print(
            f"{'user shift':>14}: top-1 category changed since the user's last request:"
            f" AUROC {shift.auroc:.3f} for the requests just after a user's regime switch"
            f" ({shift.n_shifted} of {shift.n_requests}); the model-free baseline (last two"
            f" events of different categories) {shift.history_auroc:.3f}"
        )


def runs_export(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    path: Annotated[Path, typer.Argument(help="Output Parquet file.")],
) -> None:
    """Export a run's per-event table (with the 1-based `rank` of each target) as Parquet."""
    from streamsim.runs import export_run

    out = export_run(workspace(ctx).connect(), run_id, path)
    console().print(f"wrote {out}")
