"""One self-contained HTML dashboard for a set of runs (works offline: plotly.js is inlined once).

Layout: a header (scenario, dataset and its fingerprint, model and checkpoint, policies, the
compare verdict), then one panel per figure of `dashboards.figures`. Every string taken from the
store is HTML-escaped here (header) or in the figure functions (labels); the figure JSON is
emitted by plotly, which escapes ``<``, ``>`` and ``/`` inside the ``<script>`` blocks.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from dashboards import data, figures
from streamsim.compare import Comparison, compare
from streamsim.errors import StreamsimError
from streamsim.report import contrasts, reading, summarize
from streamsim.runs import data_warning, run_row

PLOT_CONFIG = {"responsive": True, "displaylogo": False, "scrollZoom": False}
CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 2rem 3rem;
       color: #222; }
header { border-bottom: 1px solid #ddd; margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 1rem 0 0.5rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem;
          margin: 0 0 1rem; font-size: 0.9rem; }
dl.meta dt { font-weight: 600; color: #555; }
dl.meta dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
p.verdict { background: #f4f7fb; border-left: 4px solid #1f77b4; padding: 0.5rem 0.75rem;
            font-size: 0.95rem; }
section.panel { margin: 1.5rem 0; }
section.panel h2 { font-size: 1.1rem; margin: 0 0 0.25rem; }
section.panel p.note { color: #666; font-size: 0.85rem; margin: 0 0 0.25rem; }
"""


def _panel_notes() -> dict[str, tuple[str, str]]:
    """Panel id -> (heading, one-line explanation)."""
    return {
        "rolling": (
            "Rolling metrics over time",
            "Trailing mean over about the last 500 events, aggregated server-side; shaded bands"
            " are ground-truth drifts, crosses are detector alarms. Click a run in the legend to"
            " hide or show it.",
        ),
        "paired": (
            "Paired comparison with the baseline over time",
            "Each run minus the first run on the same events, per UTC day; the band is the"
            " 95% moving-block bootstrap CI of the mean daily difference that `streamsim compare`"
            " reports; the lower plot shows when the hit@10 difference is significant that day.",
        ),
        "quartiles": (
            "Equal-count quartiles of the replay",
            "Mean NDCG@10 per quarter of the stream (same number of events each); error bars are"
            " 95% bootstrap intervals over chunks of consecutive events.",
        ),
        "weekpart": (
            "Weekday vs weekend (UTC)",
            "Mean NDCG@10 with 95% bootstrap intervals; split before and after each known or"
            " generated change that falls inside the replay (a recurring regime at its first"
            " switch).",
        ),
        "drift": (
            "Drift-aligned windows",
            "Pre, transition, early and late post windows around every ground-truth drift, and"
            " the events until the rolling NDCG@10 is back within eps of its pre-drift level.",
        ),
        "mix": (
            "Category mix of targets and of top-1 recommendations",
            "Share of each category among the events' targets, beside each run's top-1"
            " recommended items, per time bucket.",
        ),
        "shifted": (
            "Users most likely to have shifted",
            "Per run, the users whose top-1 recommendation changed category most often over"
            " their last 5 requests (a label-free signal: no target is read). Where the stream"
            " has a generator's regimes, the signal's AUROC for 'this user just shifted' is"
            " shown beside it: near 0.5 it ranks users no better than chance, and the list is"
            " then a description of the recommendations, not evidence of a shift.",
        ),
        "tta": (
            "Test-time adaptation health",
            "Per micro-batch diagnostics (bucketed): test-time loss before/after the step,"
            " distribution of the mean Δ_{n+1}, distance of the weights from θ0, backward passes,"
            " the Gini of the top-10 recommendations and the entropy of the top-1 predictions;"
            " and the forgetting probe: NDCG@10 lost on fixed pre-replay requests re-scored with"
            " the current weights (0 under none and reset by construction).",
        ),
        "throughput": ("Throughput per stage", "Wall time of each loop stage per 1,000 events."),
    }


def build_figures(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    *,
    comparison: Comparison | None = None,
    rolling_window: int = 500,
) -> dict[str, object]:
    """Panel id -> plotly Figure for the runs (the paired panel only with a `comparison`, the
    drift panel only when the dataset has drifts, the category mix only when it has categories)."""
    dataset = str(run_row(con, run_ids[0])["dataset"])
    drifts = data.drifts_frame(con, dataset, run_ids)
    figs: dict[str, object] = {
        "rolling": figures.rolling_figure(
            data.rolling_frame(con, run_ids, window=rolling_window),
            drifts,
            data.alarms_frame(con, run_ids),
        ),
    }
    if comparison is not None:
        labels = data.run_labels(con, run_ids)
        intervals = pd.DataFrame(
            [
                {
                    "run": labels[p.run_id],
                    "mean_diff": p.mean_diff,
                    "ci_low": p.ci_low,
                    "ci_high": p.ci_high,
                }
                for p in comparison.pairs
            ],
            columns=["run", "mean_diff", "ci_low", "ci_high"],
        )
        figs["paired"] = figures.paired_figure(
            data.paired_frame(con, run_ids, metric=comparison.metric),
            intervals,
            baseline=labels[run_ids[0]],
        )
    figs |= {
        "quartiles": figures.segment_figure(
            data.segment_frame(con, run_ids, "quartile"), title="NDCG@10 per replay quartile"
        ),
    }
    if data.changes_inside(con, dataset, run_ids):  # the weekpart split at each known change
        figs["weekpart"] = figures.segment_figure(
            data.segment_frame(con, run_ids, "weekpart-changes", dataset=dataset),
            title="NDCG@10 on weekdays and weekends, before and after each change",
        )
    else:
        figs["weekpart"] = figures.segment_figure(
            data.segment_frame(con, run_ids, "weekpart"), title="NDCG@10 on weekdays and weekends"
        )
    if len(drifts):
        windows = data.segment_frame(
            con, run_ids, "drift", dataset=dataset, rolling_window=rolling_window
        )
        if len(windows):
            figs["drift"] = figures.drift_figure(windows)
    if data.has_categories(con, dataset):
        targets, top1 = data.mix_frames(con, run_ids, dataset)
        figs["mix"] = figures.mix_figure(targets, top1)
        figs["shifted"] = figures.shifted_figure(data.shifted_users_frame(con, run_ids))
    health, deltas = data.batch_frames(con, run_ids)
    figs["tta"] = figures.tta_figure(health, deltas, data.probe_frame(con, run_ids))
    figs["throughput"] = figures.throughput_figure(data.throughput_frame(con, run_ids))
    return figs


def build_dashboard(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    *,
    title_info: Mapping[str, str] | None = None,
) -> str:
    """The dashboard HTML for `run_ids` (first = baseline) as one string.

    Parameters
    ----------
    title_info
        Extra ``label -> value`` lines for the header (e.g. the command that produced the runs).
    """
    run_ids = list(run_ids)
    if not run_ids:
        msg = "a dashboard needs at least one run, got none"
        raise StreamsimError(msg)
    rows = [run_row(con, r) for r in run_ids]
    comparison, verdict = _compare(con, run_ids)
    summaries = [summarize(con, r) for r in run_ids]
    lines = reading(summaries, comparison, contrasts(con, summaries))
    figs = build_figures(con, run_ids, comparison=comparison)
    notes = _panel_notes()
    panels = []
    for k, (key, fig) in enumerate(figs.items()):
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"panel-{key}",
            config=PLOT_CONFIG,
        )
        heading, note = notes[key]
        panels.append(
            f'<section class="panel" id="section-{key}" data-index="{k}">'
            f'<h2>{html.escape(heading)}</h2><p class="note">{html.escape(note)}</p>'
            f"{div}</section>"
        )
    warnings = [w for w in (data_warning(con, r) for r in run_ids) if w is not None]
    labels = data.run_labels(con, run_ids)
    title = f"streamsim · {rows[0]['scenario']} · {', '.join(labels[r] for r in run_ids)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        f"</head><body>{_header(rows, verdict, title_info, warnings)}{_reading(lines)}"
        f"{''.join(panels)}"
        "</body></html>\n"
    )


def write_dashboard(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    path: Path,
    *,
    title_info: Mapping[str, str] | None = None,
) -> Path:
    """Write `build_dashboard` to `path` (parents created) and return the path."""
    page = build_dashboard(con, run_ids, title_info=title_info)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def default_path(directory: Path, run_ids: Sequence[str]) -> Path:
    """``<directory>/<run ids joined by '_'>.html`` with unsafe characters replaced."""
    stem = "_".join(run_ids)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:150] or "dashboard"
    return directory / f"{stem}.html"


def _compare(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> tuple[Comparison | None, str]:
    """The default `compare` of the runs (per day) and its verdict, or why there is none."""
    if len(run_ids) < 2:
        return None, "single run: nothing to compare"
    try:
        result = compare(con, run_ids)
    except StreamsimError as exc:
        return None, f"not compared: {exc}"
    return result, result.verdict


def _reading(lines: Sequence[str]) -> str:
    """The plain-language reading of the runs (`streamsim.report.reading`): each policy against
    the first with its step size, each continual run against its reset run and each label-free
    step against its placebo, the conclusion."""
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<section class="reading" id="reading"><h2>Reading</h2><ul>{items}</ul></section>'


def _header(
    rows: list[dict[str, object]],
    verdict: str,
    title_info: Mapping[str, str] | None,
    warnings: Sequence[str] = (),
) -> str:
    first = rows[0]
    fields: list[tuple[str, str]] = [
        ("scenario", f"{first['scenario']} (hash {str(first['scenario_hash'])[:12]})"),
        ("dataset", str(first["dataset"])),
        ("data fingerprint", str(first["data_fingerprint"])),
    ]
    checkpoints = dict.fromkeys((str(r["model"]), str(r["checkpoint_hash"])[:12]) for r in rows)
    fields.append(
        (
            "model" if len(checkpoints) == 1 else "models",
            ", ".join(f"{m} (checkpoint {h})" for m, h in checkpoints),
        )
    )
    policies = []
    for r in rows:
        manifest = r.get("manifest")
        settings = ""
        if isinstance(manifest, str):
            try:
                policy = json.loads(manifest).get("policy")
            except (ValueError, AttributeError):
                policy = None
            if isinstance(policy, dict):
                settings = ", ".join(f"{k}={v}" for k, v in sorted(policy.items()))
        n = int(str(r["n_events"]))
        policies.append(
            f"{r['policy']} — run {r['run_id']}, seed {r['seed']}, {n:,} events"
            + (f" [{settings}]" if settings else "")
        )
    fields.append(("policies", " | ".join(policies)))
    if any(r["data_fingerprint"] != first["data_fingerprint"] for r in rows):
        fields.append(("warning", "the runs were made on data with different fingerprints"))
    for warning in warnings:
        fields.append(("warning", warning))
    for key, value in (title_info or {}).items():
        fields.append((str(key), str(value)))
    meta = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in fields)
    title = f"streamsim dashboard — {first['scenario']}"
    return (
        f'<header><h1>{html.escape(title)}</h1><dl class="meta">{meta}</dl>'
        f'<p class="verdict"><strong>compare:</strong> {html.escape(verdict)}</p></header>'
    )
