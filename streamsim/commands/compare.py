"""CLI: `streamsim compare` (paired statistics of runs over the same events, as tables) and
`streamsim dashboard` (the same runs as one self-contained HTML page)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from streamsim.commands import JsonOption, console, reading, workspace

if TYPE_CHECKING:  # imported when the command runs (a fast `--help`)
    from streamsim.compare import Comparison

OVERALL_KEYS = (
    "n_events",
    "ndcg@10",
    "hr@10",
    "hr@50",
    "mrr@10",
    "ndcg@10.repeat",
    "ndcg@10.explore",
    "ndcg@10.cold",
    "share.repeat",
    "share.cold",
)


def _num(value: float, fmt: str = ".4f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, fmt)


def segment_table(comparison: Comparison) -> Table:
    """Per segment: events, the baseline's value and each other run's difference from it."""
    base = comparison.run_ids[0]
    table = Table(
        title=f"{comparison.metric} per {comparison.segment}: {comparison.labels[0]} and the"
        " paired differences",
        title_justify="left",
    )
    table.add_column(comparison.segment)
    table.add_column("events", justify="right")
    table.add_column(comparison.labels[0], justify="right")
    for label in comparison.labels[1:]:
        table.add_column(f"{label} − {comparison.labels[0]}", justify="right")
    for row in comparison.segments.to_dict(orient="records"):
        diffs = [_num(row[r] - row[base], "+.4f") for r in comparison.run_ids[1:]]
        table.add_row(Text(str(row["segment"])), str(int(row["n_events"])), _num(row[base]), *diffs)
    return table


def render_comparison(comparison: Comparison, *, per_segment: bool = False) -> Group:
    """Rich renderable of a comparison: overall metrics, (optionally) the per-segment
    differences, paired tests and the verdict line."""
    overall = Table(title="overall metrics", title_justify="left")
    overall.add_column("run")
    overall.add_column("policy")
    for key in OVERALL_KEYS:
        overall.add_column(key, justify="right")
    for run_id, label in zip(comparison.run_ids, comparison.labels):
        row = comparison.overall[run_id]
        cells = [f"{int(row['n_events'])}"] + [_num(row[k]) for k in OVERALL_KEYS[1:]]
        overall.add_row(Text(run_id), Text(label), *cells)

    holm = " (Holm)" if comparison.holm else ""
    paired = Table(
        title=(
            f"{comparison.metric} vs {comparison.labels[0]} ({comparison.run_ids[0]}):"
            f" paired per-{comparison.segment} differences, moving-block bootstrap"
            f" (block {comparison.block}, {comparison.n_boot} resamples)"
        ),
        title_justify="left",
    )
    for col in (
        "policy",
        "segments",
        "mean diff",
        "95% CI",
        "rel. diff",
        "Wilcoxon p" + holm,
        "users",
        "user diff [95% CI]",
        "user Wilcoxon p" + holm,
        "McNemar hit@10 p" + holm,
        "verdict",
    ):
        paired.add_column(col, justify="left" if col in ("policy", "verdict") else "right")
    for p in comparison.pairs:
        paired.add_row(
            Text(p.label),
            str(p.n_segments),
            f"{p.mean_diff:+.4f}",
            f"[{_num(p.ci_low, '+.4f')}, {_num(p.ci_high, '+.4f')}]",
            f"{_num(100 * p.rel_diff, '+.1f')}%",
            _num(p.wilcoxon_p_holm if comparison.holm else p.wilcoxon_p, ".3g"),
            str(p.n_users),
            f"{_num(p.user_mean_diff, '+.4f')} [{_num(p.user_ci_low, '+.4f')},"
            f" {_num(p.user_ci_high, '+.4f')}]",
            _num(p.user_wilcoxon_p_holm if comparison.holm else p.user_wilcoxon_p, ".3g"),
            f"{_num(p.mcnemar_p_holm if comparison.holm else p.mcnemar_p, '.3g')}"
            f" ({p.mcnemar_b}/{p.mcnemar_c}, {p.mcnemar_method})",
            p.verdict,
        )
    parts = [overall, segment_table(comparison)] if per_segment else [overall]
    return Group(*parts, paired, Text(f"verdict: {comparison.verdict}"))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_runs)
    app.command("dashboard")(dashboard)


def compare_runs(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Run ids; the first is the baseline.")],
    metric: Annotated[
        str, typer.Option(help="ndcg@10, hr@10 (= recall@10), hr@50 or mrr@10.")
    ] = "ndcg@10",
    segment: Annotated[
        str,
        typer.Option(
            help="Unit of the paired differences: day, week, quartile or change-aligned (the"
            " windows around each change); or per day over some days only: weekday, weekend,"
            " before:DATE, after:DATE."
        ),
    ] = "day",
    block: Annotated[
        int, typer.Option(min=1, help="Moving-block bootstrap block length, in segments.")
    ] = 7,
    n_boot: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap generator.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Paired comparison of runs over the same events (block bootstrap CI, Wilcoxon,
    McNemar, Holm)."""
    with reading(ctx) as con:
        from streamsim.compare import compare

        result = compare(
            con, runs, metric=metric, segment=segment, block=block, n_boot=n_boot, seed=seed
        )
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, allow_nan=False))
        return
    console().print(render_comparison(result, per_segment=True))


def dashboard(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Run ids; the first is the baseline.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="HTML file (default: <workspace>/dashboards/)."),
    ] = None,
) -> None:
    """Write one self-contained HTML dashboard (works offline) for the runs."""
    from dashboards.page import default_path, write_dashboard

    folder = workspace(ctx).subdir("dashboards")
    with reading(ctx) as con:
        written = write_dashboard(con, runs, output or default_path(folder, runs))
    typer.echo(str(written))
