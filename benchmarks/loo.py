"""Leave-one-out full-ranking results (RecBole protocol) for the baselines and T2ARec, over seeds.

    python benchmarks/loo.py --data ../shared/data --dataset amazon-beauty-5core --max-len 50 \
        --seeds 3 --results docs/benchmarks.d/loo-amazon-beauty-5core-L50.jsonl

Ingests the dataset into a temporary workspace and runs
`streamsim.leave_one_out.evaluate_loo` for each (seed, model), seed-major (every model once
before the next seed), so an interrupted run still has one seed of everything. T2ARec (and any
model named in `--tta-models`) is evaluated twice from the same trained weights: without and
with test-time alignment (Algorithm 1).

Every finished (model, seed) appends one JSON line to `--results`; a rerun with the same settings
skips the pairs already there, so the benchmark can be continued across sessions; inside a
(model, seed) training saves its state after every epoch under `--resume-dir` (default
``~/.streamsim/loo-resume``, `streamsim.resume`), so a killed run loses at most one epoch and
continues to the same result (the file is refused if the code or settings changed). `--render`
only prints the markdown table of what the file holds: mean ± sample standard deviation over
the seeds present, the number of seeds, epochs run (best epoch), and seconds per seed (for a
resumed run, the sum of its epochs' seconds across processes when larger than the last one's).
Rows are named by `--label` (default: the model's name); a run with `--label` takes model
config overrides from `--config KEY=JSON` (repeatable) and keeps them in its record. T2ARec rows
recorded before its default L_state changed (they were trained with the paper's L_state at
μ2 = 1) carry the label `t2arec-literal`.

`--doc PAGE` also writes that table into PAGE between the markers named after the results
file (`<!-- loo-ml-100k-L200:begin -->` ... `:end -->`; see `benchmarks/doc_tables.py`):

    python benchmarks/loo.py --dataset ml-100k --max-len 200 \
        --results docs/benchmarks.d/loo-ml-100k-L200.jsonl --render --doc docs/results.md
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from doc_tables import add_doc_option, report

from streamsim import resume as resume_state
from streamsim.ingest import ingest
from streamsim.leave_one_out import default_tta, evaluate_loo
from streamsim.progress import TrainEpoch, TrainStep
from streamsim.store import Workspace
from streamsim.train import ModelSpec, TrainSpec

MODELS = ("popularity", "transition", "gru4rec", "sasrec", "t2arec", "mamba4rec")
COLUMNS = ("recall@10", "mrr@10", "ndcg@10", "recall@50", "ndcg@50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--only-seeds",
        default="",
        help="comma list of seeds to run (of range(--seeds)); lets seeds run in parallel processes",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tta-models", default="t2arec", help="also evaluated with TTA")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--render", action="store_true", help="only print the table")
    add_doc_option(parser)
    parser.add_argument(
        "--resume-dir",
        type=Path,
        default=Path.home() / ".streamsim" / "loo-resume",
        help="per-epoch training state; an interrupted (model, seed) continues from it",
    )
    parser.add_argument("--no-resume", action="store_true", help="start every run afresh")
    parser.add_argument("--label", help="row name (one model only); default: the model's name")
    parser.add_argument(
        "--config", action="append", default=[], help="model config override KEY=JSON"
    )
    parser.add_argument(
        "--pending", action="store_true", help="only list the unfinished runs in --resume-dir"
    )
    args = parser.parse_args()
    if args.pending:
        print(pending(args.resume_dir, args.dataset, args.max_len))
        return

    settings = {
        "dataset": args.dataset,
        "max_len": args.max_len,
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "lr": args.lr,
    }
    if not args.render:
        run(args, settings)
    table = render(read_results(args.results, settings), settings)
    print(table)
    if args.doc is not None:
        report(args.doc, args.results.stem, table)


def _epoch_line(label: str, event: TrainStep | TrainEpoch) -> None:
    """One line per finished epoch, so a long run can be watched (`tail -f` the log)."""
    if isinstance(event, TrainEpoch):
        info = event.record
        valid = info.get("valid.ndcg@10", float("nan"))
        print(
            f"{label} epoch {event.epoch}: train loss {info['train_loss']:.4f}, "
            f"valid ndcg@10 {valid:.4f}, {info['seconds']:.0f} s",
            flush=True,
        )


def run(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    names = args.models.split(",")
    if args.label and len(names) != 1:
        msg = f"--label names one model's rows: expected one --models, got {names}"
        raise SystemExit(msg)
    overrides = tuple((k, json.loads(v)) for k, _, v in (c.partition("=") for c in args.config))
    done = {(row_name(r), r["seed"]) for r in read_results(args.results, settings)}
    seeds: list[int] = list(range(args.seeds))
    if args.only_seeds:
        seeds = [int(s) for s in args.only_seeds.split(",")]
        if not all(0 <= s < args.seeds for s in seeds):
            msg = f"--only-seeds {args.only_seeds}: expected seeds in 0..{args.seeds - 1}"
            raise SystemExit(msg)
    todo = [
        (seed, name) for seed in seeds for name in names if (args.label or name, seed) not in done
    ]
    if not todo:
        return
    tta_models = set(filter(None, args.tta_models.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        con = Workspace.resolve(tmp).connect()
        ingest(con, args.data / args.dataset, name=args.dataset)
        for seed, name in todo:
            started = time.perf_counter()
            result = evaluate_loo(
                con,
                args.dataset,
                ModelSpec(name=name, config=(("max_len", args.max_len), *overrides)),
                TrainSpec(
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    patience=args.patience,
                    eval_batch_size=4096,
                ),
                seed=seed,
                device=args.device,
                tta=default_tta() if name in tta_models else None,
                resume_dir=None if args.no_resume else args.resume_dir,
                progress=functools.partial(_epoch_line, f"{name} seed {seed}"),
            )
            record = {
                "settings": settings,
                **result,
                **({"label": args.label, "config": dict(overrides)} if args.label else {}),
                "seconds": round(time.perf_counter() - started, 1),  # this process only
                # every epoch's seconds, also those run before a resume (by earlier processes)
                "history_seconds": round(sum(h["seconds"] for h in result["history"]), 1),  # type: ignore[attr-defined]
                "device": args.device,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
            }
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with args.results.open("a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
            print(json.dumps({k: record[k] for k in ("model", "seed", "epochs", "seconds")}))


def read_results(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of `path` made with exactly these settings (others are ignored)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("settings") == settings]


def row_name(record: dict[str, Any]) -> str:
    """The table row a record belongs to: its label, else its model's name."""
    return str(record.get("label") or record["model"])


def pending(resume_dir: Path, dataset: str, max_len: int) -> str:
    """Unfinished (model, seed) runs of this dataset and L: epochs done, best validation so far."""
    lines = []
    for path in sorted(resume_dir.glob(f"{dataset}-L{max_len}-*.pt")):
        key, state = resume_state.peek(path)
        best = max((h.get("valid.ndcg@10", float("nan")) for h in state.history), default=None)
        lines.append(
            f"{key['model']} seed {key['seed']}: {state.epochs_done} epochs done"
            f"{' (finished, not yet tested)' if state.finished else ''}, "
            f"best valid NDCG@10 {best:.4f}, last epoch {state.history[-1]['seconds']:.0f} s"
        )
    return "\n".join(lines) or f"no unfinished runs in {resume_dir}"


def _seconds(record: dict[str, Any]) -> float:
    """Wall seconds of a (model, seed): its process's, or for a resumed run the sum of its
    epochs' seconds when that is larger (the earlier processes' share)."""
    return max(record["seconds"], record.get("history_seconds", 0.0))


def render(records: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault(row_name(r), []).append(r)
    lines = [
        f"LOO, full ranking, {settings['dataset']}, max length {settings['max_len']}, "
        f"batch {settings['batch_size']}, Adam lr {settings['lr']}, at most "
        f"{settings['epochs']} epochs, patience {settings['patience']} (validation NDCG@10)",
        "",
        "| model | seeds | " + " | ".join(COLUMNS) + " | epochs run (best) | s/seed |",
        "|" + "---|" * (len(COLUMNS) + 4),
    ]
    for model, results in rows.items():
        variants = [("test", model)]
        if all("test_tta" in r for r in results):
            variants = [
                ("test", f"{model} (no test-time alignment)"),
                ("test_tta", f"{model} (+ test-time alignment)"),
            ]
        for key, label in variants:
            cells = []
            for col in COLUMNS:
                values = np.array([r[key][col] for r in results])
                if len(values) > 1:
                    cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
                else:  # one seed: no spread to show
                    cells.append(f"{values.mean():.4f}")
            epochs = ", ".join(f"{r['epochs']} ({r.get('best_epoch')})" for r in results)
            secs = np.mean([_seconds(r) for r in results])
            lines.append(
                f"| {label} | {len(results)} | " + " | ".join(cells) + f" | {epochs} | {secs:.0f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
