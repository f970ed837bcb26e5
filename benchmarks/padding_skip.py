"""Skipping right padding: training-step time of the models that do it, against scanning all L.

Usage: ``python benchmarks/padding_skip.py [--data ../shared/data] [--reps 3]``.

Mamba4Rec (`models.selective_scan`, given lengths) and the TTT models (`models.ttt.ttt_dual`,
given lengths) compute only the positions, or mini-batches, that a history reaches. The baseline,
measured in the same run on the same batch, is the same model with that skipping switched off
(the scan given Δ zeroed on padding instead of lengths; `ttt_dual` given no lengths), which is
what they ran before 2026-12-06. One Adam step of `model.loss` (forward + backward + update),
B = 256, 12,000 items, default configs, one torch thread, best of `--reps` after one warm-up.
History lengths: uniform in 1..L, and those of the LOO training examples of amazon-beauty-5core
(L = 50) and ml-100k (L = 200) where `--data` holds them.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from history_lengths import (
    DATASETS,
    batch_with_lengths,
    loo_history_lengths,
    scan_all_positions,
    sequence_lengths,
)
from torch import Tensor

import models
import models.mamba4rec
import models.ttt
from models.base import SeqBatch
from streamsim.rng import seeded

MODELS = ("mamba4rec", "ttt4rec", "ttt_linear_rec")


def _ttt_all_mini_batches(*args: Any, lengths: Tensor | None = None, **kw: Any) -> Any:
    return _TTT_DUAL(*args, **kw)


_TTT_DUAL = models.ttt.ttt_dual


@contextlib.contextmanager
def _no_skipping(name: str) -> Iterator[None]:
    if name == "mamba4rec":
        with mock.patch.object(models.mamba4rec, "selective_scan", scan_all_positions):
            yield
    else:
        with mock.patch.object(models.ttt, "ttt_dual", _ttt_all_mini_batches):
            yield


def _step_seconds(name: str, batch: SeqBatch, length: int, n_items: int, reps: int) -> float:
    with seeded(0):
        model = models.create(name, n_items=n_items, config={"max_len": length}).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    best = float("inf")
    for _ in range(reps + 1):  # the first call warms up and is not counted
        start = time.perf_counter()
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--items", type=int, default=12_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch={torch.__version__} threads=1 B={args.batch} items={args.items} fp32")
    print(f"{'model':<15} {'L':>4} {'lengths':<34} {'all L ms':>9} {'skip ms':>9} {'speed-up':>9}")
    for length in (50, 200):
        pools: list[tuple[str, np.ndarray | None]] = [("uniform 1..L", None)]
        per_user = sequence_lengths(args.data, DATASETS[length])
        if per_user is not None:
            pools.append((DATASETS[length], loo_history_lengths(per_user, length)))
        for label, pool in pools:
            batch = batch_with_lengths(args.batch, length, args.items, pool)
            label = f"{label} (mean {float(batch.lengths.float().mean()):.1f})"
            for name in MODELS:
                with _no_skipping(name):
                    full = _step_seconds(name, batch, length, args.items, args.reps)
                skip = _step_seconds(name, batch, length, args.items, args.reps)
                print(
                    f"{name:<15} {length:>4} {label:<34} {full * 1e3:9.1f} {skip * 1e3:9.1f} "
                    f"{full / skip:8.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
