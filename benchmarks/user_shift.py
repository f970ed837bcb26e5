"""The per-user shift signal's AUROC over stored runs of generated streams.

    python benchmarks/user_shift.py --stores '/tmp/detstudy/*' \\
        --results docs/benchmarks.d/user-shift.jsonl
    python benchmarks/user_shift.py --results docs/benchmarks.d/user-shift.jsonl \\
        --render --doc docs/results.md

For every workspace matching --stores and every complete run of policy `none` in it,
`streamsim.user_shift.score_user_shift` (the model's top-1 category changing between a user's
requests, and the model-free baseline, against "within 3 requests of the user's regime switch")
appends one JSON line; a rerun skips the runs already there. `--render` prints the mean AUROC
per scenario and model over the streams (one run per seed), with the 95% t-interval.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
from pathlib import Path

import numpy as np
from doc_tables import add_doc_option, show
from scipy import stats

from streamsim.runs import list_runs
from streamsim.store import Workspace
from streamsim.user_shift import score_user_shift


def read(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _f(value: object) -> float:
    """A stored number (None for NaN) as a float."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _ci(values: list[float]) -> str:
    v = np.asarray([x for x in values if math.isfinite(x)])
    if len(v) < 2:
        return f"{v.mean():.3f}" if len(v) else "-"
    half = float(stats.t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return f"{v.mean():.3f} [{v.mean() - half:.3f}, {v.mean() + half:.3f}]"


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        "| scenario | model | runs | just-shifted share | AUROC: top-1 category changed |"
        " AUROC: model-free baseline | precision / recall (model) |",
        "|---|---|---|---|---|---|---|",
    ]
    # one run per stream: a store replayed twice (a rerun) counts once
    rows = list({(r["scenario"], r["model"], r["seed"]): r for r in reversed(rows)}.values())[::-1]
    keys = dict.fromkeys((str(r["scenario"]), str(r["model"])) for r in rows)
    for scenario, model in keys:
        got = [r for r in rows if (r["scenario"], r["model"]) == (scenario, model)]
        share = np.mean([_f(r["n_shifted"]) / _f(r["n_requests"]) for r in got])
        prec = np.nanmean([_f(r["precision"]) for r in got])
        recs = [_f(r["recall"]) for r in got if r["recall"] is not None]
        rec = float(np.mean(recs)) if recs else math.nan
        lines.append(
            f"| {scenario} | {model} | {len(got)} | {share:.1%}"
            f" | {_ci([_f(r['auroc']) for r in got])}"
            f" | {_ci([_f(r['history_auroc']) for r in got])}"
            f" | {prec:.3f} / {rec:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", help="a glob of workspace directories")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--render", action="store_true", help="only print the table")
    add_doc_option(parser)
    args = parser.parse_args()
    if not args.render:
        done = {r["run_id"] for r in read(args.results)}
        for store in sorted(glob.glob(args.stores)):
            con = Workspace.resolve(store).connect()
            try:
                for run in list_runs(con):
                    if run["policy"] != "none" or run["status"] != "complete":
                        continue
                    if run["run_id"] in done:
                        continue
                    score = score_user_shift(con, run["run_id"])
                    if score is None:
                        continue
                    keys = ("run_id", "scenario", "model", "seed")
                    row = {**{k: run[k] for k in keys}, **score.to_json()}
                    args.results.parent.mkdir(parents=True, exist_ok=True)
                    with args.results.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
            finally:
                con.close()
    show(render(read(args.results)), args.results, args.doc)


if __name__ == "__main__":
    main()
