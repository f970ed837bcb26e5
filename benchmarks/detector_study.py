"""The detector study over every shipped synthetic scenario, seed by seed, resumable.

    python benchmarks/detector_study.py --seeds 0-9 --model transition --store /tmp/detstudy \\
        --results docs/benchmarks.d/detector-study.jsonl
    python benchmarks/detector_study.py --results docs/benchmarks.d/detector-study.jsonl \\
        --render --doc docs/results.md

Each (scenario, seed) is `streamsim.detector_study.run_seed` (the same as `streamsim detectors`:
the scenario's own detectors watching a frozen count model's signals on that seed's generated
stream) and appends one JSON line per detector to --results; a rerun skips the pairs already
there. `--render` prints the summary (`detector_study.summarize`) as a markdown table. With
`--auto TARGET` the detectors' thresholds are calibrated on each stream's validation window to
TARGET false alarms per 10k events (`streamsim.calibration`) instead of river's defaults:

    python benchmarks/detector_study.py --seeds 0-9 --auto 5 --store /tmp/detstudy-auto \
        --results docs/benchmarks.d/detector-study-auto.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

from doc_tables import add_doc_option, show

from streamsim.calibration import auto_detector
from streamsim.detector_study import SeedScore, StudyRow, run_seed, summarize

SCENARIOS = ("weekend-shift", "sudden-shift", "gradual-drift", "recurring-shift", "new-items",
             "no-drift")  # fmt: skip


def auto_detectors(target_far: float) -> list[dict[str, object]]:
    """The shipped scenarios' three detectors with their sensitivity calibrated ("auto")."""
    watched = (("adwin", "rr10"), ("page_hinkley", "ndcg10"), ("ddm", "miss10"))
    return [auto_detector(name, signal, target_far) for name, signal in watched]


def read(path: Path) -> list[SeedScore]:
    if not path.exists():
        return []
    return [SeedScore(**json.loads(line)) for line in path.read_text().splitlines() if line]


def render(scores: list[SeedScore]) -> str:
    lines = [
        "Detector study (a frozen count model's signals; mean over seeds [95% t-interval]; F1"
        " and its Holm-corrected Wilcoxon p against dummies firing as often)",
        "",
        "| scenario | detector | seeds | alarms/seed | missed | false alarms / 10k | delay (events)"
        " | F1 | F1 periodic | F1 random | p periodic | p random | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summarize(scores):
        lines.append(
            f"| {r.scenario} | {r.detector} | {r.seeds} | {r.alarms:.1f}"
            f" | {_cell(r, 'missed_rate')} | {_cell(r, 'far_per_10k', '.2f')}"
            f" | {_cell(r, 'delay_events', '.0f')}"
            f" | {_cell(r, 'f1')} | {r.f1_periodic:.3f} | {r.f1_random:.3f}"
            f" | {_p(r.p_periodic)} | {_p(r.p_random)} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.3g}"


def _cell(row: StudyRow, metric: str, fmt: str = ".3f") -> str:
    mean, low, high = row.means[metric]
    if math.isnan(mean):
        return "-"
    return f"{mean:{fmt}}" + ("" if math.isnan(low) else f" [{low:{fmt}}, {high:{fmt}}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--model", default="transition")
    parser.add_argument("--store", type=Path, default=Path("/tmp/detector-study"))
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument(
        "--auto",
        type=float,
        default=None,
        help="calibrate every detector's threshold on the validation window to this many false"
        " alarms per 10k events (the scenarios' three detectors, params 'auto')",
    )
    parser.add_argument("--render", action="store_true", help="only print the table")
    add_doc_option(parser)
    args = parser.parse_args()
    if not args.render:
        lo, _, hi = args.seeds.partition("-")
        done = {(s.scenario, s.seed) for s in read(args.results)}
        overrides = {} if args.auto is None else {"detectors": auto_detectors(args.auto)}
        for name in args.scenarios.split(","):
            for seed in range(int(lo), int(hi or lo) + 1):
                if (name, seed) in done:
                    continue
                scores = run_seed(args.store, name, seed, model=args.model, overrides=overrides)
                args.results.parent.mkdir(parents=True, exist_ok=True)
                with args.results.open("a") as fh:
                    for s in scores:
                        fh.write(json.dumps(asdict(s)) + "\n")
                print(f"{name} seed {seed}: {len(scores)} detectors", flush=True)
    show(render(read(args.results)), args.results, args.doc)


if __name__ == "__main__":
    main()
