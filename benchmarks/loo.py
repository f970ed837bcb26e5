"""Leave-one-out full-ranking results (RecBole protocol) for every baseline and T2ARec, over seeds.

    python benchmarks/loo.py --data ../shared/data --dataset amazon-beauty-5core --max-len 50 \
        --seeds 3 --device cuda --out docs/benchmarks.d/loo-beauty.md

Ingests the dataset into a temporary workspace, runs `streamsim.evaluate.evaluate_loo` for each
model and seed (T2ARec twice: without and with test-time alignment, from the same trained weights
per seed), and writes a markdown table of mean ± std over seeds. Published numbers for the same
protocol are listed beside ours in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from streamsim.evaluate import default_tta, evaluate_loo
from streamsim.ingest import ingest
from streamsim.scenario import ModelSpec, TrainSpec
from streamsim.store import Workspace

MODELS = ("popularity", "transition", "gru4rec", "sasrec", "mamba4rec", "t2arec")
COLUMNS = ("recall@10", "mrr@10", "ndcg@10", "recall@50", "ndcg@50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder holding the dataset")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        con = Workspace.resolve(tmp).connect()
        ingest(con, args.data / args.dataset, name=args.dataset)
        rows: dict[str, list[dict[str, float]]] = {}
        meta: dict[str, list[float]] = {}
        for name in args.models.split(","):
            for seed in range(args.seeds):
                started = time.perf_counter()
                spec = ModelSpec(name=name, config=(("max_len", args.max_len),))
                train = TrainSpec(
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    lr=1e-3,
                    patience=args.patience,
                    eval_batch_size=4096,
                )
                result = evaluate_loo(
                    con,
                    args.dataset,
                    spec,
                    train,
                    seed=seed,
                    device=args.device,
                    tta=default_tta() if name == "t2arec" else None,
                )
                seconds = time.perf_counter() - started
                label = "t2arec (no test-time alignment)" if name == "t2arec" else name
                rows.setdefault(label, []).append(result["test"])  # type: ignore[arg-type]
                if "test_tta" in result:
                    rows.setdefault("t2arec (+ test-time alignment)", []).append(
                        result["test_tta"]  # type: ignore[arg-type]
                    )
                meta.setdefault(label, []).append(seconds)
                print(
                    json.dumps(
                        {
                            "model": name,
                            "seed": seed,
                            "seconds": round(seconds, 1),
                            "epochs": result["epochs"],
                            **result,
                        },
                        default=str,
                    )
                )
        table = render(args, rows, meta)
        print(table)
        if args.out is not None:
            args.out.write_text(table)


def render(
    args: argparse.Namespace, rows: dict[str, list[dict[str, float]]], meta: dict[str, list[float]]
) -> str:
    head = "| model | " + " | ".join(COLUMNS) + " | s/seed |"
    lines = [
        f"LOO, full ranking, {args.dataset}, max length {args.max_len}, {args.seeds} seeds,"
        f" device {args.device}, batch {args.batch_size}, patience {args.patience}",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for label, results in rows.items():
        cells = []
        for col in COLUMNS:
            values = [r[col] for r in results]
            cells.append(f"{np.mean(values):.4f} ± {np.std(values):.4f}")
        secs = meta.get(label, meta.get("t2arec (no test-time alignment)", [float("nan")]))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(secs):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
