"""CLI: `streamsim replay`, `streamsim runs list|show|export`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamsim.commands import SetOption, console, parse_pairs, workspace
from streamsim.replay import BatchResult


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    runs_app = typer.Typer(help="Stored replay runs.", no_args_is_help=True)
    runs_app.command("list")(runs_list)
    runs_app.command("show")(runs_show)
    runs_app.command("export")(runs_export)
    app.add_typer(runs_app, name="runs")


def replay(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Scenario name or TOML path.")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Replay only these policies (repeatable)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Override the model.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the seed.")] = None,
    max_events: Annotated[
        int | None, typer.Option("--max-events", help="Replay only the first N events.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue unfinished runs from their last chunk.")
    ] = False,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Write the HTML dashboard.")
    ] = True,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a scenario: data, pretraining (cached), then one run per adaptation policy."""
    from streamsim import health
    from streamsim.commands.compare import render_comparison
    from streamsim.compare import compare
    from streamsim.pipeline import prepare, replay_policy
    from streamsim.report import summarize
    from streamsim.scenario import load

    overrides: dict[str, Any] = {}
    if policy:
        overrides["policies"] = list(policy)
    if model is not None:
        overrides["model.name"] = model
    if seed is not None:
        overrides["seed"] = seed
    if max_events is not None:
        overrides["replay.max_events"] = max_events
    overrides.update(parse_pairs(set_ or [], "--set", "train.patience=6"))
    sc = load(scenario, overrides)
    ws = workspace(ctx)
    con = ws.connect()
    out = console(stderr=as_json)
    with _progress(out) as bar:
        task = bar.add_task("pretraining", total=1.0, info="")

        def on_train(p: dict[str, float]) -> None:
            if "epoch_end" in p:
                info = f"epoch {int(p['epoch'])} valid ndcg@10 {p.get('valid.ndcg@10', 0):.4f}"
                bar.update(task, info=info)
            else:
                bar.update(
                    task,
                    completed=p["done"],
                    description=f"pretraining epoch {int(p['epoch'])}",
                    info=f"loss {p['loss']:.3f}  {p['events_per_s']:.0f} ex/s",
                )

        prepared = prepare(con, ws, sc, train_progress=on_train)
        bar.update(task, completed=1.0, description="pretraining (done)")
        run_ids = []
        for pol in sc.policies:
            ptask = bar.add_task(f"replay {pol.name}", total=None, info="")
            state = {"n": 0, "ndcg": 0.0, "t0": time.perf_counter()}

            def on_batch(
                name: str, r: BatchResult, period: int, t: Any = ptask, state: Any = state
            ) -> None:
                state["n"] += len(r.batch)
                state["ndcg"] += float(r.ndcg10.sum())
                rate = state["n"] / max(time.perf_counter() - state["t0"], 1e-9)
                bar.update(
                    t,
                    total=period,
                    completed=state["n"],
                    info=f"{rate:.0f} events/s  ndcg@10 {state['ndcg'] / state['n']:.4f}",
                )

            run_ids.append(
                replay_policy(con, ws, sc, pol, prepared, resume=resume, progress=on_batch)
            )
    summaries = [summarize(con, run_id) for run_id in run_ids]
    best = prepared.checkpoint.manifest.get("best", {})
    health_warning = health.warning_line(best, prepared.checkpoint.model_name)
    comparison = compare(con, run_ids) if len(run_ids) > 1 else None
    path = _write_dashboard(con, ws, run_ids, sc.name) if dashboard and run_ids else None
    if as_json:
        payload = {
            "scenario": sc.name,
            "split_report": prepared.cold,
            "runs": summaries,
            "comparison": comparison.to_json() if comparison else None,
            "dashboard": str(path) if path else None,
            "training_health": health.manifest_entry(best, prepared.checkpoint.model_name),
        }
        typer.echo(json.dumps(payload, default=str, indent=2))
        if health_warning is not None:
            typer.echo(health_warning, err=True)
        return
    out = console()
    if health_warning is not None:
        out.print(health_warning, markup=False, style="bold yellow")
    out.print(_cold_line(prepared.cold))
    out.print(_summary_table(sc.name, summaries))
    for s in summaries:
        for det in s["detectors"]:
            out.print(_detector_line(s["policy"], det))
    for s in summaries:
        if s["tta_skipped_steps"]:
            out.print(_skipped_line(s["policy"], s["tta_skipped_steps"]))
    if comparison is not None:
        out.print(render_comparison(comparison))
    if path is not None:
        out.print(f"dashboard: {path}")


def _write_dashboard(con: Any, ws: Any, run_ids: list[str], name: str) -> Path:
    from dashboards.page import write_dashboard

    path = ws.subdir("dashboards") / f"{name}-{run_ids[0].rsplit('-', 1)[-1]}.html"
    return Path(write_dashboard(con, run_ids, path))


def _progress(out: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=out,
        transient=False,
    )


def _summary_table(scenario: str, summaries: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{scenario}: prequential replay, full-catalogue ranking")
    for col in (
        "policy",
        "events",
        "HR@10",
        "NDCG@10",
        "MRR@10",
        "HR@50",
        "NDCG@10 by quartile",
        "alarms",
        "forgetting",
        "events/s",
    ):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for s in summaries:
        m = s["metrics"]
        table.add_row(
            s["policy"],
            str(s["n_events"]),
            f"{m['hr@10']:.4f}",
            f"{m['ndcg@10']:.4f}",
            f"{m['mrr@10']:.4f}",
            f"{m['hr@50']:.4f}",
            " ".join(f"{q:.4f}" for q in s["quartiles"]),
            str(sum(d["alarms"] for d in s["detectors"])),
            _forgetting_cell(s["forgetting"]),
            f"{s['events_per_s']:.0f}",
        )
    table.caption = (
        "forgetting: NDCG@10 lost on the pre-replay probe by the end of the replay (θ₀ minus"
        " final weights, ± its standard error; > 0 is worse)"
    )
    return table


def _forgetting_cell(f: dict[str, Any]) -> str:
    if f["last"] is None:
        return "-"
    se = f["se_last"]
    return f"{f['last']:+.4f}" + ("" if se is None or se != se else f" ± {se:.4f}")


def _skipped_line(policy: str, n: int) -> str:
    return (
        f"warning: policy {policy!r} skipped {n} test-time steps whose loss or gradient was not"
        " finite (the adaptation diverged; lower tta_lr)"
    )


def _cold_line(cold: dict[str, int]) -> str:
    n = max(cold.get("replay_events", 0), 1)
    users, items = cold.get("events_unseen_user", 0) / n, cold.get("events_unseen_item", 0) / n
    return (
        f"replay period: {cold.get('replay_events', 0)} events; unseen before the cut:"
        f" {cold.get('unseen_users', 0)} users ({users:.1%} of events),"
        f" {cold.get('unseen_items', 0)} items ({items:.1%} of events)"
    )


def _detector_line(policy: str, d: dict[str, Any]) -> str:
    line = f"  [{policy}] {d['detector']}({d['signal']}): {d['alarms']} alarms"
    if "detected" in d and d["alarms"] == 0:
        return line + f"; missed all {d['n_drifts']} ground-truth drifts"
    if "detected" in d:

        def scored(prefix: str) -> str:
            return (
                f"detected {d[prefix + 'detected']}/{d['n_drifts']} drifts"
                f" (missed {d[prefix + 'missed_rate']:.0%}), delay"
                f" {d[prefix + 'delay_events']:.0f} events / {d[prefix + 'delay_hours']:.1f} h,"
                f" {d[prefix + 'far_per_10k']:.1f} false alarms/10k,"
                f" MTFA {d[prefix + 'mtfa_events']:.0f} events"
            )

        line += f"; {scored('')}  | periodic baseline, same alarm count: {scored('periodic_')}"
        if "random_detected" in d:
            line += (
                f"  | random baseline: detected {d['random_detected']}/{d['n_drifts']},"
                f" {d['random_far_per_10k']:.1f} false alarms/10k"
            )
    return line


def runs_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List stored runs."""
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
            r["run_id"],
            r["scenario"],
            r["model"],
            r["policy"],
            str(r["seed"]),
            r["status"],
            str(r["n_events"]),
            eps,
        )
    console().print(table)


def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (see `streamsim runs list`).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a run: its manifest, overall metrics, quartiles and detectors."""
    from streamsim.report import summarize
    from streamsim.runs import run_info

    con = workspace(ctx).connect()
    info = run_info(con, run_id)
    summary = summarize(con, run_id)
    if as_json:
        typer.echo(json.dumps({**info, **summary}, default=str, indent=2))
        return
    out = console()
    for key in (
        "run_id",
        "scenario",
        "dataset",
        "model",
        "policy",
        "seed",
        "status",
        "n_events",
        "events_per_s",
        "started",
        "finished",
    ):
        out.print(f"{key:>14}: {info[key]}")
    for key, value in summary["metrics"].items():
        out.print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    out.print(f"{'quartiles':>14}: " + " ".join(f"{q:.4f}" for q in summary["quartiles"]))
    h = summary["health"]
    if h["rec_gini"] is not None:
        out.print(
            f"{'health':>14}: top-10 coverage {h['coverage']:.4f}, Gini {h['rec_gini']:.4f},"
            f" top-1 entropy {h['top1_entropy']:.3f} nats (per micro-batch means)"
        )
    if summary["tta_skipped_steps"]:
        out.print(_skipped_line(info["policy"], summary["tta_skipped_steps"]))
    if summary["tta_resets"]:
        n = summary["tta_resets"]
        out.print(f"{'tta resets':>14}: {n} (periodic, drift-triggered or oracle)")
    f = summary["forgetting"]
    if f["points"]:
        out.print(
            f"{'forgetting':>14}: {_forgetting_cell(f)} at the end, {f['max']:+.4f} at most,"
            f" over {f['points']} probe points (NDCG@10 on the pre-replay probe, θ₀ minus now)"
        )
        if f["top1_flip_last"] is not None:
            out.print(
                f"{'top-1 flips':>14}: {f['top1_flip_last']:.1%} of the probe's top-1 items"
                " differ from θ₀'s at the end"
            )
    for det in summary["detectors"]:
        out.print(_detector_line(info["policy"], det))


def runs_export(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    path: Annotated[Path, typer.Argument(help="Output Parquet file.")],
) -> None:
    """Export a run's per-event table (with the 1-based `rank` of each target) as Parquet."""
    from streamsim.runs import export_run

    out = export_run(workspace(ctx).connect(), run_id, path)
    console().print(f"wrote {out}")
