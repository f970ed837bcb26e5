"""Does test-time adaptation help? The experiment that settles it, seed by seed, resumable.

For each seed (the scenario's `seed`: it draws the synthetic stream and seeds pretraining) and
each model variant, one `run_scenario` replays these policies of the scenario's data and split:

    none                                         the frozen model
    {reset, continual} x {model, entropy,        model: the model's own test-time loss (T2ARec:
                          selfsup, oracle}       alignment; TTT4Rec: top-K entropy); entropy
                                                 (Tent); selfsup (next item on the batch's own
                                                 histories); oracle: a diagnostic ceiling that
                                                 reads the targets
    {reset, continual} x placebo-{model,         a random direction of exactly the size of that
                          entropy, selfsup}      rule's step on every micro-batch (`placebo_of`)

Learning rates are chosen on the validation window (`tta_lr = "auto"`, `streamsim.tuning`); a
placebo takes the rate chosen for the rule it copies, so under `reset` it moves the weights
exactly as far as that rule on every micro-batch. Every adapting policy is compared with `none`
and each label-free rule with its own placebo on the same events (`streamsim.compare`: per-day
differences with a moving-block bootstrap CI, per-user differences), and one JSON line per
(scenario, variant, seed, policy) is appended to --results.

The decision rule, written before any run: a method helps only if method − its placebo > 0 with
the 95% CI over seeds excluding 0 (one-sample t over the per-seed mean per-day differences, Holm
across the methods of a schedule) and the same sign on most seeds. Everything else is reported
as a null, next to its step size.

    python benchmarks/settle_tta.py --scenario weekend-shift --seeds 0-4 \
        --results docs/benchmarks.d/settle-weekend-shift.jsonl
    python benchmarks/settle_tta.py --scenario weekend-shift --results ... --render [--doc PAGE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_tables import add_doc_option, show  # noqa: E402
from per_seed import append, done_keys, seeds_of  # noqa: E402

from streamsim.compare import compare  # noqa: E402
from streamsim.pipeline import run_scenario  # noqa: E402
from streamsim.runs import run_info  # noqa: E402
from streamsim.scenario import load  # noqa: E402
from streamsim.stats import holm_adjust, t_interval  # noqa: E402
from streamsim.store import Workspace  # noqa: E402

# model variants: registry name and config overrides
VARIANTS: dict[str, dict[str, Any]] = {
    "t2arec": {"name": "t2arec"},
    "t2arec-literal": {
        "name": "t2arec",
        "config": {
            "mu_state_train": 1.0,
            "state_loss": "dilution",
            "state_delta": "live",
            "state_target": "live",
            "time_scale": "fixed",
        },
    },  # fmt: skip
    "ttt4rec": {"name": "ttt4rec"},
}
METHODS = ("model", "entropy", "selfsup")  # label-free: each has a placebo of its size
RULES = (*METHODS, "oracle", *(f"placebo-{m}" for m in METHODS))
SCHEDULES = ("reset", "continual")


def policies() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "none"}]
    for schedule in SCHEDULES:
        for rule in RULES:
            step = {"tta_step": rule}
            if rule.startswith("placebo-"):
                step = {"tta_step": "placebo", "placebo_of": rule.removeprefix("placebo-")}
            out.append({"name": f"{schedule}-{rule}", "tta": schedule, "tta_lr": "auto", **step})
    return out


def run_one(args: argparse.Namespace, variant: str, seed: int, store: Path) -> list[dict[str, Any]]:
    spec = VARIANTS[variant]
    overrides: dict[str, Any] = {"seed": seed, "model.name": spec["name"]}
    for key, value in spec.get("config", {}).items():
        overrides[f"model.config.{key}"] = value
    for pair in args.set or []:
        key, _, raw = pair.partition("=")
        overrides[key] = json.loads(raw)
    ws = Workspace.resolve(store)
    con = ws.connect()
    scenario = load(args.scenario, {**overrides, "adaptation.policies": policies()})
    result = run_scenario(con, ws, scenario, dashboard=False)
    by_policy = {s.policy: s for s in result.summaries}
    vs_none = {p.label: p for p in result.comparison.pairs} if result.comparison else {}
    rows = []
    for schedule in SCHEDULES:
        vs_placebo = {}
        for method in METHODS:  # each label-free rule against the placebo of its size
            pair = [by_policy[f"{schedule}-placebo-{method}"], by_policy[f"{schedule}-{method}"]]
            vs_placebo[method] = compare(con, [s.run_id for s in pair]).pairs[0]
        for rule in RULES:
            s = by_policy[f"{schedule}-{rule}"]
            n, p = vs_none[s.policy], vs_placebo.get(rule)
            rows.append(
                {
                    "scenario": scenario.name,
                    "variant": variant,
                    "seed": seed,
                    "policy": s.policy,
                    "schedule": schedule,
                    "rule": rule,
                    "tta_lr": run_info(con, s.run_id)["manifest"]["policy"]["tta_lr"],
                    "ndcg10": s.metrics["ndcg@10"],
                    "none_ndcg10": by_policy["none"].metrics["ndcg@10"],
                    "vs_none": [n.mean_diff, n.ci_low, n.ci_high],
                    "vs_none_users": [n.user_mean_diff, n.user_ci_low, n.user_ci_high],
                    "vs_placebo": None if p is None else [p.mean_diff, p.ci_low, p.ci_high],
                    "vs_placebo_users": None
                    if p is None
                    else [p.user_mean_diff, p.user_ci_low, p.user_ci_high],
                    "step_rel": s.step.step_rel,
                    "top10_changed": s.step.top10_changed,
                    "hit10_flips": s.step.hit10_flips,
                    "forgetting": s.forgetting.last,
                    "n_events": s.n_events,
                    # the pretrained model's kept epoch: a collapsed model makes every null empty
                    "training_health": result.training_health,
                    "valid_ndcg10": result.prepared.checkpoint.manifest.get("best", {}).get(
                        "valid.ndcg@10"
                    ),
                }  # fmt: skip
            )
    return rows


def render(path: Path) -> str:
    """Pooled over seeds, per variant × schedule × rule: mean NDCG@10 difference vs none and vs
    the placebo (t-interval over the per-seed means, Holm across the schedule's rules), the sign
    count, the step size, and the decision."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    lines = [
        "| variant | schedule | step rule | seeds | NDCG@10 | Δ vs none [95% CI] |"
        " Δ vs placebo [95% CI] | placebo sign (+/seeds) | Holm p | ‖Δθ‖/‖θ‖ | top-10 changed |"
        " decision | pretrained: valid NDCG@10, seeds with a health warning |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in sorted({r["variant"] for r in rows}):
        for schedule in SCHEDULES:
            cells = []
            for rule in RULES:
                got = [
                    r for r in rows
                    if r["variant"] == variant and r["schedule"] == schedule and r["rule"] == rule
                ]  # fmt: skip
                if got:
                    cells.append((rule, got))
            pvals = [t_interval(np.array([g["vs_placebo"][0] for g in got]))[2]
                     if rule in METHODS else math.nan for rule, got in cells]  # fmt: skip
            holm = holm_adjust(pvals)
            for (rule, got), p_holm in zip(cells, holm):
                n_seeds = len(got)
                none_d = np.array([g["vs_none"][0] for g in got])
                lo_n, hi_n, _ = t_interval(none_d)
                cell_pl, sign = "-", "-"
                decision = "control" if rule.startswith("placebo") else "diagnostic ceiling"
                if rule in METHODS:
                    pl = np.array([g["vs_placebo"][0] for g in got])
                    lo, hi, _ = t_interval(pl)
                    cell_pl = f"{pl.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"
                    pos = int((pl > 0).sum())
                    sign = f"{pos}/{n_seeds}"
                    helps = lo > 0 and p_holm < 0.05 and pos > n_seeds / 2
                    decision = "helps" if helps else "null"
                step = [g["step_rel"] for g in got if g["step_rel"] is not None]
                top10 = [g["top10_changed"] for g in got if g["top10_changed"] is not None]
                valid = [g["valid_ndcg10"] for g in got if g.get("valid_ndcg10") is not None]
                warned = sum(bool((g.get("training_health") or {}).get("warning")) for g in got)
                pretrained = f"{np.mean(valid):.4f}, {warned}/{n_seeds}" if valid else "-"
                lines.append(
                    f"| {variant} | {schedule} | {rule} | {n_seeds} |"
                    f" {np.mean([g['ndcg10'] for g in got]):.4f} |"
                    f" {none_d.mean():+.4f} [{lo_n:+.4f}, {hi_n:+.4f}] | {cell_pl} | {sign} |"
                    f" {'-' if math.isnan(p_holm) else f'{p_holm:.3g}'} |"
                    f" {np.mean(step) if step else float('nan'):.1e} |"
                    f" {np.mean(top10) if top10 else float('nan'):.1%} | {decision} |"
                    f" {pretrained} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--variants", default="t2arec,t2arec-literal,ttt4rec")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--store", type=Path, default=Path.home() / ".streamsim-settle")
    parser.add_argument("--set", action="append", help="scenario override KEY=JSON")
    parser.add_argument("--render", action="store_true", help="only print the table")
    add_doc_option(parser)
    args = parser.parse_args()
    if not args.render:
        done = done_keys(args.results, "variant", "seed")
        for seed in seeds_of(args.seeds):  # seed-major: every variant once before the next seed
            for variant in args.variants.split(","):
                if (variant, seed) in done:
                    continue
                started = time.perf_counter()
                rows = run_one(args, variant, seed, args.store / f"{args.scenario}-seed{seed}")
                append(args.results, rows, started=started)
                print(f"{args.scenario} {variant} seed {seed}: {len(rows)} rows", flush=True)
    show(render(args.results), args.results, args.doc)


if __name__ == "__main__":
    main()
