"""Replay quality of every model on a scenario: none for all, TTA policies for adaptive models.

    python benchmarks/replay_models.py --scenario weekend-shift \
        --results docs/benchmarks.d/replay-models-weekend-shift.jsonl

For each model (the scenario's split, training settings and replay batching; the model's default
config with the scenario's `max_len`): pretrain (cached in the workspace), then replay under
`none`; models with a test-time loss (T2ARec, TTT4Rec) also under `reset`, `continual` and both
with the ETA-Rec sample filter. One JSON line per (model, policy) goes to `--results` as it
finishes; a rerun skips the rows already there (`--store` keeps the checkpoints across runs).
`--render` prints the markdown table: overall NDCG@10 / HR@10 / MRR@10, NDCG@10 per quartile of
the replay, the paired daily NDCG@10 difference against the model's `none` run with its
moving-block bootstrap 95% CI, the filtered share, and events/s. `--doc PAGE` also writes that
table into PAGE between the markers named after the results file
(`<!-- replay-models-weekend-shift:begin -->` ... `:end -->`; see `benchmarks/doc_tables.py`):

    python benchmarks/replay_models.py --scenario weekend-shift \
        --results docs/benchmarks.d/replay-models-weekend-shift.jsonl --render --doc docs/results.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from doc_tables import add_doc_option, report

import models
from streamsim.adapt import PolicySpec
from streamsim.compare import compare
from streamsim.filters import EtaFilterSpec
from streamsim.ingest import ingest
from streamsim.pipeline import prepare, replay_policy
from streamsim.report import summarize
from streamsim.scenario import Scenario, load
from streamsim.store import Workspace, has_dataset

MODELS = (
    "popularity",
    "transition",
    "gru4rec",
    "sasrec",
    "mamba4rec",
    "t2arec",
    "caser",
    "bert4rec",
    "ttt4rec",
    "ttt_linear_rec",
    "tim4rec",
)
ETA = EtaFilterSpec()


def policies(name: str) -> list[PolicySpec]:
    out = [PolicySpec(name="none")]
    if models.get(name).cls.has_test_time_loss:
        for tta in ("reset", "continual"):
            out.append(PolicySpec(name=tta, tta=tta))  # type: ignore[arg-type]
            out.append(PolicySpec(name=f"{tta}+eta", tta=tta, sample_filter=ETA))  # type: ignore[arg-type]
    return out


def ensure_ingested(con: Any, sc: Scenario, data_dir: Path) -> None:
    """Real-data scenarios: ingest their dataset from `data_dir/<name>` when the store lacks it."""
    if sc.data.synthetic is None and not has_dataset(con, sc.data.dataset):
        ingest(con, data_dir / sc.data.dataset, name=sc.data.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--store", type=Path, default=None, help="workspace (default: temp dir)")
    parser.add_argument("--render", action="store_true", help="only print the table")
    add_doc_option(parser)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="real logs")
    args = parser.parse_args()
    if not args.render:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, args.store or Path(tmp))
    table = render(args.scenario, read(args.results, args.scenario))
    print(table)
    if args.doc is not None:
        report(args.doc, args.results.stem, table)


def run(args: argparse.Namespace, store: Path) -> None:
    done = {(r["model"], r["policy"]) for r in read(args.results, args.scenario)}
    ws = Workspace.resolve(store)
    con = ws.connect()
    base_sc = load(args.scenario)
    ensure_ingested(con, base_sc, args.data)
    max_len = dict(base_sc.model.overrides).get("max_len", 50)
    for name in args.models.split(","):
        todo = [p for p in policies(name) if (name, p.name) not in done]
        if not todo:
            continue
        sc = load(args.scenario, {"model.name": name, "model.config": {"max_len": max_len}})
        started = time.perf_counter()
        prepared = prepare(con, ws, sc)
        train_s = time.perf_counter() - started
        none_id = None
        for policy in policies(name):
            if (name, policy.name) not in {(name, p.name) for p in todo}:
                continue
            run_id = replay_policy(con, ws, sc, policy, prepared)
            if policy.name == "none":
                none_id = run_id
            summary = summarize(con, run_id)
            row: dict[str, Any] = {
                "scenario": args.scenario,
                "model": name,
                "policy": policy.name,
                "run_id": run_id,
                "train_seconds": round(train_s, 1),
                "best_epoch": prepared.checkpoint.manifest["best"].get("epoch"),
                "events_per_s": summary["events_per_s"],
                "metrics": summary["metrics"],
                "quartiles": summary["quartiles"],
                "filtered_share": _filtered(con, run_id),
            }
            if none_id is not None and run_id != none_id:
                pair = compare(con, [none_id, run_id]).pairs[0]
                row["vs_none"] = {
                    "mean_diff": pair.mean_diff,
                    "ci": [pair.ci_low, pair.ci_high],
                    "wilcoxon_p": pair.wilcoxon_p,
                    "verdict": pair.verdict,
                }
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with args.results.open("a") as fh:
                fh.write(json.dumps(row, default=str) + "\n")
            print(json.dumps({k: row[k] for k in ("model", "policy", "events_per_s")}))


def _filtered(con: Any, run_id: str) -> float | None:
    (share,) = con.execute(
        "SELECT avg(filtered_share) FROM run_batches WHERE run_id = ?", [run_id]
    ).fetchone()
    return None if share is None else float(share)


def read(path: Path, scenario: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["scenario"] == scenario]


def render(scenario: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Replay of {scenario} (prequential, full-catalogue ranking; one seed)",
        "",
        "| model | policy | NDCG@10 | HR@10 | MRR@10 | NDCG@10 by quartile | Δ NDCG@10/day vs"
        " none [95% CI] | filtered | events/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        quart = " ".join(f"{q:.4f}" for q in r["quartiles"])
        vs = r.get("vs_none")
        diff = f"{vs['mean_diff']:+.4f} [{vs['ci'][0]:+.4f}, {vs['ci'][1]:+.4f}]" if vs else ""
        flt = f"{r['filtered_share']:.0%}" if r.get("filtered_share") is not None else ""
        lines.append(
            f"| {r['model']} | {r['policy']} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} |"
            f" {m['mrr@10']:.4f} | {quart} | {diff} | {flt} | {r['events_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
