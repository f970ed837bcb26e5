"""Pure ``DataFrame -> plotly Figure`` functions, one per dashboard panel.

Every function takes query results (see `dashboards.data`) and returns a `go.Figure`; nothing here
touches a database or the replay engine, so each panel is testable on a hand-made frame.

Conventions:

- times arrive as epoch seconds (UTC) and are plotted as naive UTC datetimes;
- every user-controlled string (run labels, category and detector names) goes through
  `text`, which HTML-escapes it: plotly.js renders label strings as a small HTML subset, and an
  escaped string is shown verbatim (plotly decodes the entities) instead of being parsed as tags;
  the figure JSON itself is written by plotly with ``<``, ``>`` and ``/`` as unicode escapes, so
  no string can close the surrounding ``<script>`` element;
- traces of one run share a ``legendgroup``, so a click on the legend toggles the run in every
  subplot of the panel; hover text names the time window, the event count and the value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLORS = qualitative.Plotly
CATEGORY_COLORS = qualitative.Set3 + qualitative.Pastel1
DRIFT_FILL = "rgba(214, 39, 40, 0.12)"
STAGES = ("adapt", "score", "reveal", "detect", "probe")
TIME_FMT = "%Y-%m-%d %H:%M"


def text(value: object) -> str:
    """`value` as a string safe to hand to plotly as a label.

    ``&``, ``<`` and ``>`` are HTML-escaped (plotly.js decodes these entities when it draws the
    text, so the string is shown verbatim); quotes are kept, since plotly does not decode
    ``&quot;``; ``%{`` gets a zero-width space so a name cannot act as a hover placeholder.
    """
    return html.escape(str(value), quote=False).replace("%{", "%&#8203;{")


def to_datetime(seconds: pd.Series | np.ndarray | Sequence[int]) -> pd.DatetimeIndex:
    """Epoch seconds -> naive UTC datetimes (what plotly.js expects on a date axis)."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s"))


def color(k: int) -> str:
    return COLORS[k % len(COLORS)]


def _runs(frame: pd.DataFrame) -> list[str]:
    """Run labels in order of first appearance."""
    return list(dict.fromkeys(frame["run"].tolist())) if len(frame) else []


def _window_text(t_start: pd.Series, t_end: pd.Series) -> list[str]:
    start = to_datetime(t_start).strftime(TIME_FMT)
    end = to_datetime(t_end).strftime(TIME_FMT)
    return [f"{a} – {b} UTC" for a, b in zip(start, end)]


def rolling_figure(
    rolling: pd.DataFrame,
    drifts: pd.DataFrame,
    alarms: pd.DataFrame,
    *,
    title: str = "Rolling NDCG@10 and HR@10",
) -> go.Figure:
    """Rolling NDCG@10 and HR@10 of every run on one time axis, drifts shaded, alarms marked.

    Parameters
    ----------
    rolling
        Columns ``run, metric ('ndcg@10' | 'hr@10'), t_start, t_end, first_idx, last_idx,
        n_events, window_events, value`` (one row per server-side bucket, see
        `streamsim.segments.rolling`); x is the bucket's last timestamp.
    drifts
        Ground-truth global drifts: ``drift_id, kind, start_ts, end_ts``; each is a shaded
        rectangle over all rows.
    alarms
        Detector alarms: ``run, detector, signal, idx, ts``; markers on a third row, one
        y category per detector/signal (no third row when there are no alarms).
    """
    has_alarms = len(alarms) > 0
    fig = make_subplots(
        rows=3 if has_alarms else 2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04 if has_alarms else 0.06,
        row_heights=[0.42, 0.42, 0.16] if has_alarms else [0.5, 0.5],
        subplot_titles=("NDCG@10 (rolling)", "HR@10 (rolling)", "drift alarms")
        if has_alarms
        else ("NDCG@10 (rolling)", "HR@10 (rolling; no detector alarms)"),
    )
    runs = list(dict.fromkeys(_runs(rolling) + _runs(alarms)))
    for k, run in enumerate(runs):
        for row, metric in ((1, "ndcg@10"), (2, "hr@10")):
            part = rolling[(rolling["run"] == run) & (rolling["metric"] == metric)]
            if part.empty:
                continue
            custom = np.column_stack(
                [
                    _window_text(part["t_start"], part["t_end"]),
                    part["first_idx"].to_numpy(),
                    part["last_idx"].to_numpy(),
                    part["n_events"].to_numpy(),
                    part["window_events"].to_numpy(),
                ]
            )
            fig.add_trace(
                go.Scattergl(
                    x=to_datetime(part["t_end"]),
                    y=part["value"].to_numpy(),
                    mode="lines",
                    name=text(run),
                    legendgroup=text(run),
                    showlegend=row == 1,
                    line={"color": color(k), "width": 1.5},
                    customdata=custom,
                    hovertemplate=(
                        f"<b>{text(run)}</b><br>{metric} = %{{y:.4f}}<br>"
                        "window ending in %{customdata[0]}<br>"
                        "replay idx %{customdata[1]}–%{customdata[2]} (%{customdata[3]} events)"
                        "<br>trailing mean over %{customdata[4]} events<extra></extra>"
                    ),
                ),
                row=row,
                col=1,
            )
        part = alarms[alarms["run"] == run] if len(alarms) else alarms
        if len(part):
            labels = [f"{text(d)}:{text(s)}" for d, s in zip(part["detector"], part["signal"])]
            fig.add_trace(
                go.Scattergl(
                    x=to_datetime(part["ts"]),
                    y=labels,
                    mode="markers",
                    name=f"{text(run)} alarms",
                    legendgroup=text(run),
                    showlegend=False,
                    marker={"color": color(k), "symbol": "x", "size": 8},
                    customdata=np.column_stack([part["idx"].to_numpy(), labels]),
                    hovertemplate=(
                        f"<b>{text(run)}</b> alarm<br>%{{customdata[1]}}<br>"
                        "at %{x|%Y-%m-%d %H:%M:%S} UTC, replay idx %{customdata[0]}"
                        "<extra></extra>"
                    ),
                ),
                row=3,
                col=1,
            )
    for d in drifts.itertuples(index=False):
        fig.add_vrect(
            x0=to_datetime([d.start_ts])[0],
            x1=to_datetime([d.end_ts])[0],
            fillcolor=DRIFT_FILL,
            line={"color": "rgba(214, 39, 40, 0.6)", "width": 1},
            layer="below",
            row="all",
            col=1,
            name=f"drift {int(d.drift_id)} ({text(d.kind)})",
        )
    fig.update_yaxes(title_text="NDCG@10", row=1, col=1)
    fig.update_yaxes(title_text="HR@10", row=2, col=1)
    if has_alarms:
        fig.update_yaxes(title_text="detector", row=3, col=1, type="category")
    fig.update_xaxes(title_text="time (UTC)", row=3 if has_alarms else 2, col=1)
    fig.update_layout(title=text(title), height=720, hovermode="closest", legend_title_text="run")
    return fig


def segment_figure(frame: pd.DataFrame, *, title: str, metric_label: str = "NDCG@10") -> go.Figure:
    """Per-segment means of every run as grouped bars with 95% bootstrap error bars.

    `frame` columns: ``run, segment, value, ci_low, ci_high, n_events, t_start, t_end``.
    """
    fig = go.Figure()
    for k, run in enumerate(_runs(frame)):
        part = frame[frame["run"] == run]
        value = part["value"].to_numpy(dtype=np.float64)
        plus = np.nan_to_num(part["ci_high"].to_numpy(dtype=np.float64) - value)
        minus = np.nan_to_num(value - part["ci_low"].to_numpy(dtype=np.float64))
        custom = np.column_stack(
            [
                _window_text(part["t_start"], part["t_end"]),
                part["n_events"].to_numpy(),
                part["ci_low"].to_numpy(),
                part["ci_high"].to_numpy(),
            ]
        )
        fig.add_trace(
            go.Bar(
                x=[text(s) for s in part["segment"]],
                y=value,
                name=text(run),
                legendgroup=text(run),
                marker_color=color(k),
                error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                customdata=custom,
                hovertemplate=(
                    f"<b>{text(run)}</b> · %{{x}}<br>{text(metric_label)} = %{{y:.4f}}"
                    " (95% CI %{customdata[2]:.4f}–%{customdata[3]:.4f})<br>"
                    "%{customdata[0]}<br>%{customdata[1]} events<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title=text(title),
        barmode="group",
        xaxis_title="segment",
        yaxis_title=text(metric_label),
        legend_title_text="run",
        height=380,
    )
    return fig


def drift_figure(frame: pd.DataFrame, *, title: str = "Drift-aligned windows") -> go.Figure:
    """Windows around each ground-truth drift (bars + CIs) beside the recovery time per run.

    `frame`: `streamsim.segments.drift_windows` rows with a ``run`` column.
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.68, 0.32],
        subplot_titles=("NDCG@10 per window", "recovery time (events after the drift)"),
    )
    for k, run in enumerate(_runs(frame)):
        part = frame[frame["run"] == run]
        value = part["value"].to_numpy(dtype=np.float64)
        x = [
            [f"drift {int(d)}" for d in part["drift_id"]],
            [text(w) for w in part["window"]],
        ]
        custom = np.column_stack(
            [
                _window_text(part["t_start"], part["t_end"]),
                part["n_events"].to_numpy(),
                part["first_idx"].to_numpy(),
                part["last_idx"].to_numpy(),
            ]
        )
        fig.add_trace(
            go.Bar(
                x=x,
                y=value,
                name=text(run),
                legendgroup=text(run),
                marker_color=color(k),
                error_y={
                    "type": "data",
                    "array": np.nan_to_num(part["ci_high"].to_numpy(dtype=np.float64) - value),
                    "arrayminus": np.nan_to_num(value - part["ci_low"].to_numpy(dtype=np.float64)),
                },
                customdata=custom,
                hovertemplate=(
                    f"<b>{text(run)}</b> · %{{x}}<br>NDCG@10 = %{{y:.4f}}<br>%{{customdata[0]}}"
                    "<br>replay idx %{customdata[2]}–%{customdata[3]}"
                    " (%{customdata[1]} events)<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
        rec = part.drop_duplicates("drift_id")
        events = rec["recovery_events"].to_numpy(dtype=np.float64)
        fig.add_trace(
            go.Bar(
                x=[f"drift {int(d)}" for d in rec["drift_id"]],
                y=events,
                name=text(run),
                legendgroup=text(run),
                showlegend=False,
                marker_color=color(k),
                text=["never" if math.isnan(v) else f"{int(v)}" for v in events],
                textposition="outside",
                customdata=np.column_stack(
                    [rec["recovery_hours"].to_numpy(), rec["pre_level"].to_numpy()]
                ),
                hovertemplate=(
                    f"<b>{text(run)}</b> · %{{x}}<br>recovered after %{{y}} events"
                    " (%{customdata[0]:.1f} h)<br>pre-drift NDCG@10 %{customdata[1]:.4f}"
                    "<extra></extra>"
                ),
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(title_text="NDCG@10", row=1, col=1)
    fig.update_yaxes(title_text="events", row=1, col=2)
    fig.update_layout(title=text(title), barmode="group", height=400, legend_title_text="run")
    return fig


def mix_figure(
    targets: pd.DataFrame, top1: pd.DataFrame, *, title: str = "Category mix over time"
) -> go.Figure:
    """Stacked-area category shares of the targets, beside each run's top-1 recommendations.

    `targets` columns: ``t_start, t_end, n_events, category, share`` (one row per time bucket
    and category); `top1` the same plus ``run``. Shares of a bucket sum to 1.
    """
    runs = _runs(top1)
    titles = ["targets"] + [f"top-1 of {text(r)}" for r in runs]
    fig = make_subplots(rows=1, cols=1 + len(runs), shared_yaxes=True, subplot_titles=titles)
    cats = list(dict.fromkeys(targets["category"].tolist() + top1["category"].tolist()))
    panels = [(None, targets)] + [(r, top1[top1["run"] == r]) for r in runs]
    for col, (run, frame) in enumerate(panels, start=1):
        for c, cat in enumerate(cats):
            part = frame[frame["category"] == cat]
            if part.empty:
                continue
            who = "targets" if run is None else f"top-1 of {text(run)}"
            fig.add_trace(
                go.Scatter(
                    x=to_datetime(part["t_end"]),
                    y=part["share"].to_numpy(),
                    mode="lines",
                    stackgroup=f"mix{col}",
                    name=text(cat),
                    legendgroup=text(cat),
                    showlegend=col == 1,
                    line={"width": 0.5, "color": CATEGORY_COLORS[c % len(CATEGORY_COLORS)]},
                    customdata=np.column_stack(
                        [_window_text(part["t_start"], part["t_end"]), part["n_events"]]
                    ),
                    hovertemplate=(
                        f"<b>{text(cat)}</b> in {who}<br>share %{{y:.1%}}<br>"
                        "%{customdata[0]} (%{customdata[1]} events)<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="time (UTC)", row=1, col=col)
    fig.update_yaxes(title_text="share of events", range=[0, 1], row=1, col=1)
    fig.update_layout(title=text(title), height=380, legend_title_text="category")
    return fig


def tta_figure(
    batches: pd.DataFrame,
    deltas: pd.DataFrame,
    probes: pd.DataFrame | None = None,
    *,
    title: str = "Test-time adaptation health",
) -> go.Figure:
    """Test-time loss before/after, Δ_{n+1} distribution, ‖θ−θ0‖, the size of the test-time
    step and, when the runs have a forgetting probe, its forgetting over time (a full-width row).

    `batches` columns: ``run, t_start, t_end, n_batches, n_events, tta_loss_before,
    tta_loss_after, param_distance, tta_step_rel, tta_top10_changed`` and optionally ``rec_gini,
    top1_entropy`` (drawn as a third row when present; one row per bucket of micro-batches);
    `deltas`: ``run, delta_next_mean`` (per micro-batch values, possibly subsampled);
    `probes`: ``run, batch_id, t_end, probe_ndcg10, forgetting_ndcg10, forgetting_se``
    (`data.probe_frame`; drawn with ± SE bars).
    """
    probes = probes if probes is not None and len(probes) else None
    diversity = [
        c for c in ("rec_gini", "top1_entropy") if c in batches and batches[c].notna().any()
    ]
    titles = [
        "test-time loss before (solid) / after (dotted) the step",
        "Δ_{n+1} per micro-batch (distribution)",
        "‖θ − θ0‖ after the micro-batch",
        "test-time step ‖Δθ‖/‖θ‖ per micro-batch (log; none: no step)",
    ]
    grid: list[list[dict[str, Any] | None]] = [[{}, {}], [{}, {}]]
    if diversity:
        titles += ["Gini of the top-10 recommendations", "entropy of the top-1 predictions"]
        grid.append([{}, {}])
    probe_row = len(grid) + 1
    if probes is not None:
        titles.append("forgetting: NDCG@10(θ0) − NDCG@10(now) on the pre-replay probe")
        grid.append([{"colspan": 2}, None])
    fig = make_subplots(
        rows=len(grid),
        cols=2,
        specs=grid,
        vertical_spacing=0.14 if len(grid) == 2 else 0.3 / len(grid),
        subplot_titles=titles,
    )
    extra = _runs(probes) if probes is not None else []
    for k, run in enumerate(list(dict.fromkeys(_runs(batches) + _runs(deltas) + extra))):
        part = batches[batches["run"] == run]
        name = text(run)
        custom = np.column_stack(
            [_window_text(part["t_start"], part["t_end"]), part["n_batches"], part["n_events"]]
        )
        hover_tail = "<br>%{customdata[0]}<br>%{customdata[1]} micro-batches, %{customdata[2]}"
        hover_tail += " events<extra></extra>"
        x = to_datetime(part["t_end"])
        specs = (
            ("tta_loss_before", 1, 1, "solid", "loss before"),
            ("tta_loss_after", 1, 1, "dot", "loss after"),
            ("param_distance", 2, 1, "solid", "‖θ−θ0‖"),
            ("tta_step_rel", 2, 2, "solid", "‖Δθ‖/‖θ‖"),
            *((("rec_gini", 3, 1, "solid", "Gini"), ("top1_entropy", 3, 2, "solid", "nats"))
              if diversity else ()),
        )  # fmt: skip
        first = True
        for column, row, col, dash, label in specs:
            y = part[column].to_numpy(dtype=np.float64)
            if len(y) == 0 or np.all(np.isnan(y)):
                continue
            fig.add_trace(
                go.Scattergl(
                    x=x,
                    y=y,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=first,
                    line={"color": color(k), "dash": dash},
                    customdata=custom,
                    hovertemplate=f"<b>{name}</b><br>{label} = %{{y:.4g}}" + hover_tail,
                ),
                row=row,
                col=col,
            )
            first = False
        d = deltas[deltas["run"] == run]["delta_next_mean"].dropna() if len(deltas) else []
        if len(d):
            fig.add_trace(
                go.Histogram(
                    x=np.asarray(d, dtype=np.float64),
                    name=name,
                    legendgroup=name,
                    showlegend=first,
                    marker_color=color(k),
                    opacity=0.6,
                    hovertemplate=(
                        f"<b>{name}</b><br>Δ_{{n+1}} in %{{x}}<br>%{{y}} micro-batches"
                        "<extra></extra>"
                    ),
                ),
                row=1,
                col=2,
            )
            first = False
        pr = probes[probes["run"] == run] if probes is not None else None
        if pr is not None and len(pr):
            se = np.nan_to_num(pr["forgetting_se"].to_numpy(dtype=np.float64))
            fig.add_trace(
                go.Scatter(
                    x=to_datetime(pr["t_end"]),
                    y=pr["forgetting_ndcg10"].to_numpy(dtype=np.float64),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=first,
                    line={"color": color(k)},
                    error_y={"type": "data", "array": se, "visible": True, "thickness": 1},
                    customdata=np.column_stack(
                        [pr["batch_id"], pr["probe_ndcg10"].to_numpy(dtype=np.float64), se]
                    ),
                    hovertemplate=(
                        f"<b>{name}</b><br>forgetting = %{{y:+.4f}} ± %{{customdata[2]:.4f}}"
                        " (SE)<br>probe NDCG@10 = %{customdata[1]:.4f}<br>after micro-batch"
                        " %{customdata[0]}<extra></extra>"
                    ),
                ),
                row=probe_row,
                col=1,
            )
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="micro-batches", row=1, col=2)
    fig.update_xaxes(title_text="mean Δ_{n+1}", row=1, col=2)
    fig.update_yaxes(title_text="‖θ−θ0‖", row=2, col=1)
    fig.update_yaxes(title_text="‖Δθ‖/‖θ‖", type="log", row=2, col=2)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=2)
    height = 620
    if diversity:
        fig.update_yaxes(title_text="Gini", row=3, col=1)
        fig.update_yaxes(title_text="nats", row=3, col=2)
        fig.update_xaxes(title_text="time (UTC)", row=3, col=1)
        fig.update_xaxes(title_text="time (UTC)", row=3, col=2)
        height += 330
    if probes is not None:
        fig.update_yaxes(title_text="Δ NDCG@10", row=probe_row, col=1)
        fig.update_xaxes(title_text="time (UTC)", row=probe_row, col=1)
        fig.add_hline(y=0.0, line={"color": "#444", "width": 1}, row=probe_row, col=1)
        height += 330
    fig.update_layout(title=text(title), barmode="overlay", height=height, legend_title_text="run")
    return fig


def throughput_figure(frame: pd.DataFrame, *, title: str = "Throughput per stage") -> go.Figure:
    """Seconds per 1,000 events in each stage of the loop, stacked per run.

    `frame` columns: ``run, stage (adapt|score|reveal|detect), seconds, n_events,
    events_per_s`` (``seconds`` = total wall time of the stage over the run).
    """
    fig = go.Figure()
    runs = _runs(frame)
    for s, stage in enumerate(STAGES):
        part = frame[frame["stage"] == stage].set_index("run").reindex(runs)
        events = part["n_events"].to_numpy(dtype=np.float64)
        seconds = part["seconds"].to_numpy(dtype=np.float64)
        # a run without events has no rate (NaN, drawn as no bar)
        per_1k = 1000.0 * seconds / np.where(events > 0, events, np.nan)
        fig.add_trace(
            go.Bar(
                y=[text(r) for r in runs],
                x=per_1k,
                orientation="h",
                name=stage,
                marker_color=COLORS[(s + 4) % len(COLORS)],
                customdata=np.column_stack(
                    [
                        part["seconds"].to_numpy(),
                        part["n_events"].to_numpy(),
                        part["events_per_s"].to_numpy(),
                    ]
                ),
                hovertemplate=(
                    f"<b>%{{y}}</b> · {stage}<br>%{{x:.3f}} s per 1k events<br>"
                    "%{customdata[0]:.2f} s over %{customdata[1]} events"
                    " (run: %{customdata[2]:.0f} events/s)<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title=text(title),
        barmode="stack",
        xaxis_title="seconds per 1,000 events",
        yaxis_title="run",
        legend_title_text="stage",
        height=max(320, 140 + 50 * len(runs)),
    )
    return fig


def shifted_figure(
    frame: pd.DataFrame, *, title: str = "Users most likely to have shifted"
) -> go.Figure:
    """One table: per run, the users whose recent recommendations changed category most often.

    `frame` columns: ``run, user_id, flagged, requests, last_ts, auroc``
    (`data.shifted_users_frame`; ``auroc`` NaN where the stream has no ground truth).
    """

    def auroc(v: float) -> str:
        return "no ground truth" if math.isnan(v) else f"{v:.3f} (chance 0.5)"

    when = to_datetime(frame["last_ts"].to_numpy(dtype=np.int64)).strftime(TIME_FMT)
    cells = [
        [text(r) for r in frame["run"]],
        [str(u) for u in frame["user_id"]],
        [f"{f} of {n}" for f, n in zip(frame["flagged"], frame["requests"], strict=True)],
        list(when),
        [auroc(float(v)) for v in frame["auroc"]],
    ]
    fig = go.Figure(
        go.Table(
            header={
                "values": [
                    "run",
                    "user",
                    "recent requests flagged",
                    "last request (UTC)",
                    "signal AUROC on this stream",
                ],  # fmt: skip
                "align": "left",
            },
            cells={"values": cells, "align": "left"},
        )
    )
    fig.update_layout(title=text(title), height=max(320, 120 + 24 * len(frame)))
    return fig


def paired_figure(
    frame: pd.DataFrame,
    intervals: pd.DataFrame,
    *,
    baseline: str,
    metric_label: str = "NDCG@10",
    title: str = "Paired daily difference vs the baseline",
) -> go.Figure:
    """When does a run beat the baseline? Daily paired differences and daily McNemar p-values.

    Parameters
    ----------
    frame
        `dashboards.data.paired_frame`: ``run, t_start, t_end, n_events, diff, b, c,
        mcnemar_p`` per run and UTC day.
    intervals
        The compare result per run: ``run, mean_diff, ci_low, ci_high`` (moving-block
        bootstrap); drawn as a dashed line at the mean and a shaded band over the CI.
    baseline
        Label of the baseline run (for titles and hover).
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        row_heights=[0.65, 0.35],
        subplot_titles=(
            f"daily {text(metric_label)} difference vs {text(baseline)}"
            " (markers), 7-day moving average (line), mean and 95% block-bootstrap CI (band)",
            "daily McNemar p-value on hit@10",
        ),
    )
    # colours match the other panels: the baseline is run 0, the compared runs are 1, 2, ...
    for k, run in enumerate(_runs(frame), start=1):
        part = frame[frame["run"] == run]
        name = text(run)
        x = to_datetime(part["t_end"])
        custom = np.column_stack(
            [_window_text(part["t_start"], part["t_end"]), part["n_events"], part["b"], part["c"]]
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=part["diff"].to_numpy(dtype=np.float64),
                mode="markers",
                name=name,
                legendgroup=name,
                marker={"color": color(k), "size": 6, "opacity": 0.6},
                customdata=custom,
                hovertemplate=(
                    f"<b>{name}</b> − {text(baseline)}<br>difference %{{y:+.4f}}<br>"
                    "%{customdata[0]} (%{customdata[1]} events)<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
        moving = part["diff"].rolling(7, min_periods=1).mean().to_numpy(dtype=np.float64)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=moving,
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=False,
                line={"color": color(k), "width": 2},
                hovertemplate=(
                    f"<b>{name}</b> − {text(baseline)}<br>7-day moving average %{{y:+.4f}}"
                    "<br>up to %{x|%Y-%m-%d}<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=part["mcnemar_p"].to_numpy(dtype=np.float64),
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=False,
                marker={"color": color(k), "size": 6, "symbol": "diamond"},
                customdata=custom,
                hovertemplate=(
                    f"<b>{name}</b> vs {text(baseline)}, hit@10<br>McNemar p = %{{y:.3g}}<br>"
                    "%{customdata[2]} events hit only by the run, %{customdata[3]} only by the"
                    " baseline<br>%{customdata[0]} (%{customdata[1]} events)<extra></extra>"
                ),
            ),
            row=2,
            col=1,
        )
        ci = intervals[intervals["run"] == run]
        if len(ci) and len(x):
            row = ci.iloc[0]
            fig.add_hrect(
                y0=float(row["ci_low"]),
                y1=float(row["ci_high"]),
                fillcolor=color(k),
                opacity=0.15,
                line_width=0,
                layer="below",
                row=1,
                col=1,
            )
            fig.add_hline(
                y=float(row["mean_diff"]),
                line={"color": color(k), "dash": "dash", "width": 1},
                row=1,
                col=1,
            )
    fig.add_hline(y=0.0, line={"color": "#444", "width": 1}, row=1, col=1)
    fig.add_hline(y=0.05, line={"color": "#999", "dash": "dot", "width": 1}, row=2, col=1)
    fig.update_yaxes(title_text=f"Δ {text(metric_label)}", row=1, col=1)
    fig.update_yaxes(title_text="p (log)", type="log", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    fig.update_layout(title=text(title), height=560, legend_title_text="run")
    return fig
