"""Does resetting on a drift alarm beat resetting as often at other times? Seed by seed, resumable.

Continual test-time adaptation drifts away from the pretrained weights; a reset to θ₀ undoes
that. A drift detector earns its place as a reset trigger only if resetting on its alarms beats
resetting the same number of times without it (Bifet 2017's point about detectors, RDumb's
about periodic resets). For each seed (the scenario's `seed`: stream and pretraining) this
replays, with one step rule (`--step`, default the main job's ``entropy``) at its
validation-chosen learning rate:

    none                      the frozen model
    continual                 the step carried forward, never reset
    triggered-D               continual, reset on every alarm of detector D (``reset_on_alarm``),
                              for each of the scenario's detectors (or --triggers)

then, for each trigger, with its reset count R read from the triggered run:

    periodic-D                continual, ``reset_every`` chosen so the replay gets R resets
                              (the nearest count a fixed period allows; both counts are stored)
    random-D                  continual, ``reset_random = R``: R resets after micro-batches drawn
                              uniformly at random

and compares triggered − periodic and triggered − random on the same events with
`streamsim.compare` (per-day NDCG@10 differences, moving-block bootstrap CI), plus each policy
against ``none`` and ``continual``. One JSON line per (scenario, seed, trigger) is appended to
--results. A trigger with no alarm on a seed has nothing to match: its periodic and random runs
are plain continual (not replayed again), and the row says R = 0.

The decision rule, written before any run: a trigger beats a matched baseline only if
triggered − baseline > 0 with the 95% t-interval over seeds excluding 0 (Holm across the
triggers × baselines) and the same sign on most seeds.

    python benchmarks/triggered_resets.py --scenario weekend-shift --seeds 0-4 \
        --results docs/benchmarks.d/triggered-resets-weekend-shift.jsonl --store DIR
    python benchmarks/triggered_resets.py --results ... --render [--doc docs/results.md]
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
from streamsim.report import RunSummary  # noqa: E402
from streamsim.scenario import load  # noqa: E402
from streamsim.stats import holm_adjust, t_interval  # noqa: E402
from streamsim.store import Workspace  # noqa: E402

BASELINES = ("periodic", "random")


def period_for(n_batches: int, resets: int) -> int:
    """The ``reset_every`` whose resets inside the replay (after batches 0 .. n − 2) come
    nearest `resets` (the longer period on a tie)."""

    def count(every: int) -> int:
        return (n_batches - 1) // every

    return min(range(1, n_batches + 1), key=lambda e: (abs(count(e) - resets), -e))


def tag(trigger: str) -> str:
    """A policy-name-safe form of ``name:signal``."""
    return trigger.replace(":", "-")


def run_seed(args: argparse.Namespace, seed: int, store: Path) -> list[dict[str, Any]]:
    ws = Workspace.resolve(store)
    con = ws.connect()
    base = {"name": "continual", "tta": "continual", "tta_step": args.step, "tta_lr": "auto"}
    overrides: dict[str, Any] = {"seed": seed}
    for pair in args.set or []:
        key, _, raw = pair.partition("=")
        overrides[key] = json.loads(raw)
    scenario = load(args.scenario, overrides)
    triggers = args.triggers.split(",") if args.triggers else [d.key for d in scenario.detectors]
    first = [{"name": "none"}, base]
    first += [{**base, "name": f"triggered-{tag(t)}", "reset_on_alarm": t} for t in triggers]
    result = run_scenario(
        con, ws, load(args.scenario, {**overrides, "adaptation.policies": first}),
        dashboard=False, resume=True,
    )  # fmt: skip
    by_policy: dict[str, RunSummary] = {s.policy: s for s in result.summaries}
    n_batches = int(
        con.execute(
            "SELECT count(*) FROM run_batches WHERE run_id = ?", [by_policy["continual"].run_id]
        ).fetchone()[0]  # type: ignore[index]
    )
    second = []
    for t in triggers:  # a trigger that never fired is matched by plain continual itself
        # a reset after the last micro-batch changes nothing: matched counts leave it out
        if resets := min(by_policy[f"triggered-{tag(t)}"].tta_resets, n_batches - 1):
            every = period_for(n_batches, resets)
            second.append({**base, "name": f"periodic-{tag(t)}", "reset_every": every})
            second.append({**base, "name": f"random-{tag(t)}", "reset_random": resets})
    result2 = run_scenario(
        con, ws, load(args.scenario, {**overrides, "adaptation.policies": first + second}),
        dashboard=False, resume=True,
    )  # fmt: skip
    by_policy = {s.policy: s for s in result2.summaries}
    none, continual = by_policy["none"], by_policy["continual"]

    def diff(a: RunSummary, b: RunSummary) -> list[float]:
        """a − b: mean per-day NDCG@10 difference and its 95% CI (0 for a run and itself: a
        never-fired trigger's baselines are plain continual)."""
        if a.run_id == b.run_id:
            return [0.0, 0.0, 0.0]
        pair = compare(con, [b.run_id, a.run_id]).pairs[0]
        return [pair.mean_diff, pair.ci_low, pair.ci_high]

    rows = []
    for t in triggers:
        trig = by_policy[f"triggered-{tag(t)}"]
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "model": scenario.model.name,
            "seed": seed,
            "step": args.step,
            "trigger": t,
            "n_batches": n_batches,
            "resets": trig.tta_resets,
            "ndcg10": {
                "none": none.metrics["ndcg@10"],
                "continual": continual.metrics["ndcg@10"],
                "triggered": trig.metrics["ndcg@10"],
            },  # fmt: skip
            "vs_none": {"continual": diff(continual, none), "triggered": diff(trig, none)},
            "vs_continual": {"triggered": diff(trig, continual)},
            "triggered_vs": {},
        }
        for b in BASELINES:
            other = by_policy.get(f"{b}-{tag(t)}", continual)
            row[f"{b}_resets"] = other.tta_resets
            row["ndcg10"][b] = other.metrics["ndcg@10"]
            row["vs_none"][b] = diff(other, none)
            row["vs_continual"][b] = diff(other, continual)
            row["triggered_vs"][b] = diff(trig, other)
        rows.append(row)
    return rows


def render(path: Path) -> str:
    """Pooled over seeds, per trigger: resets (triggered / periodic / random), NDCG@10 of each
    policy, triggered − baseline with a t-interval over the per-seed mean per-day differences
    (Holm across triggers × baselines), the sign count and the decision."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    lines = [
        "| scenario | trigger | seeds | resets: triggered / periodic / random | NDCG@10: none,"
        " continual, triggered, periodic, random | triggered − continual [95% CI] |"
        " triggered − periodic [95% CI] | sign | Holm p | triggered − random [95% CI] | sign |"
        " Holm p | decision |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = []
    for scenario in sorted({r["scenario"] for r in rows}):
        for trigger in sorted({r["trigger"] for r in rows if r["scenario"] == scenario}):
            got = [r for r in rows if r["scenario"] == scenario and r["trigger"] == trigger]
            cells.append((scenario, trigger, got))
    pvals = [
        t_interval(np.array([g["triggered_vs"][b][0] for g in got]))[2]
        for _, _, got in cells for b in BASELINES
    ]  # fmt: skip
    holm = iter(holm_adjust(pvals))
    for scenario, trigger, got in cells:
        n = len(got)

        def mean(key: str, *, got: list[dict[str, Any]] = got) -> float:
            return float(np.mean([g[key] for g in got]))

        ndcg = ", ".join(
            f"{np.mean([g['ndcg10'][k] for g in got]):.4f}"
            for k in ("none", "continual", "triggered", *BASELINES)
        )
        cont = np.array([g["vs_continual"]["triggered"][0] for g in got])
        lo, hi, _ = t_interval(cont)
        parts, wins = [], 0
        for b in BASELINES:
            d = np.array([g["triggered_vs"][b][0] for g in got])
            lo_b, hi_b, _ = t_interval(d)
            p = next(holm)
            pos = int((d > 0).sum())
            beats = lo_b > 0 and p < 0.05 and pos > n / 2
            wins += beats
            parts.append(
                f"{d.mean():+.4f} [{lo_b:+.4f}, {hi_b:+.4f}] | {pos}/{n} |"
                f" {'-' if math.isnan(p) else f'{p:.3g}'}"
            )
        if mean("resets") == 0:
            decision = "never fired: nothing to compare"
        elif wins == len(BASELINES):
            decision = "beats both"
        elif wins:
            decision = "beats one baseline"
        else:
            decision = "null"
        lines.append(
            f"| {scenario} | {trigger} | {n} | {mean('resets'):.1f} /"
            f" {mean('periodic_resets'):.1f} / {mean('random_resets'):.1f} | {ndcg} |"
            f" {cont.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] | {' | '.join(parts)} | {decision} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="weekend-shift")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--step", default="entropy", help="the continual step rule (tta_step)")
    parser.add_argument("--triggers", default=None, help="name:signal,... (default: all)")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--store", type=Path, default=Path.home() / ".streamsim-resets")
    parser.add_argument("--set", action="append", help="scenario override KEY=JSON")
    parser.add_argument("--render", action="store_true", help="only print the table")
    add_doc_option(parser)
    args = parser.parse_args()
    if not args.render:
        done = done_keys(args.results, "scenario", "seed")
        for seed in seeds_of(args.seeds):
            if (args.scenario, seed) in done:
                continue
            started = time.perf_counter()
            rows = run_seed(args, seed, args.store / f"{args.scenario}-seed{seed}")
            append(args.results, rows, started=started)
            print(f"{args.scenario} seed {seed}: {len(rows)} triggers", flush=True)
    show(render(args.results), args.results, args.doc)


if __name__ == "__main__":
    main()
