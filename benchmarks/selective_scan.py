"""Mamba-1 selective scan: the hand-written-backward scan against the autograd oracle.

Usage: ``python benchmarks/selective_scan.py [--threads 2] [--batch 256] [--lengths 50,200]
[--data ../shared/data]``.

For each length L prints, best of `--reps` after one warm-up, in the same run:

- the scan alone (B, L, E = 128, N = 32, fp32, every position valid): forward and
  forward+backward seconds of `models.selective_scan.selective_scan_ref` (baseline) and
  `selective_scan`, the speed-up, and the largest relative gradient difference between them;
- the whole Mamba4Rec model (default config, 12,000 items): `loss(batch).backward()` seq/s
  through the oracle (baseline), through `selective_scan` scanning every position with Δ = 0 on
  padding ("fast, all L"), and through `selective_scan` given the lengths so it skips padding
  ("fast"): the model's default. History lengths are drawn uniformly from 1..L, and, where
  `--data` holds them, from the leave-one-out training examples of amazon-beauty-5core (L = 50)
  and ml-100k (L = 200): every prefix of every user's sequence but the last two, capped at L.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
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
import models.mamba4rec as mamba4rec_module
from models.base import SeqBatch
from models.selective_scan import selective_scan, selective_scan_ref

SCANS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "reference": selective_scan_ref,
    "fast, all L": scan_all_positions,
    "fast": selective_scan,
}


def _scan_inputs(bsz: int, length: int, chans: int, nstate: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(bsz, length, chans, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(bsz, length, chans, generator=g))
    A = -torch.exp(torch.randn(chans, nstate, generator=g))
    B, C = (
        torch.randn(bsz, length, nstate, generator=g),
        torch.randn(bsz, length, nstate, generator=g),
    )
    D, z = torch.randn(chans, generator=g), torch.randn(bsz, length, chans, generator=g)
    return [t.requires_grad_() for t in (u, dt, A, B, C, D, z)]


def _time_scan(
    scan: Callable[..., tuple[Tensor, Tensor]], inputs: list[Tensor], reps: int
) -> tuple[float, float, list[Tensor]]:
    best_fwd = best_all = float("inf")
    grads: list[Tensor] = []
    for _ in range(reps + 1):  # the first call warms up and is not counted
        start = time.perf_counter()
        y, h = scan(*inputs)
        mid = time.perf_counter()
        grads = list(torch.autograd.grad(y.sum() + h.sum(), inputs))
        end = time.perf_counter()
        best_fwd, best_all = min(best_fwd, mid - start), min(best_all, end - start)
    return best_fwd, best_all, grads


def _model_rate(scan_name: str, length: int, batch: SeqBatch, n_items: int, reps: int) -> float:
    model = models.create("mamba4rec", n_items=n_items, config={"max_len": length})
    best = float("inf")
    with mock.patch.object(mamba4rec_module, "selective_scan", SCANS[scan_name]):
        for _ in range(reps + 1):
            start = time.perf_counter()
            model.loss(batch).backward()
            best = min(best, time.perf_counter() - start)
    return batch.size / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lengths", default="50,200")
    parser.add_argument("--items", type=int, default=12_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch={torch.__version__} threads={args.threads} B={args.batch} E=128 N=32 fp32")
    print(f"{'L':<4} {'what':<34} {'reference':>9} {'fast':>9} {'speed-up':>9}  grad rel.diff")
    print("     (scan alone: every position valid; model rows: seq/s and ratio to the reference)")
    for length in (int(x) for x in args.lengths.split(",")):
        inputs = _scan_inputs(args.batch, length, chans=128, nstate=32)
        ref_fwd, ref_all, ref_grads = _time_scan(selective_scan_ref, inputs, args.reps)
        fast_fwd, fast_all, fast_grads = _time_scan(selective_scan, inputs, args.reps)
        pairs = zip(fast_grads, ref_grads, strict=True)
        diff = max(float((a - b).norm() / b.norm()) for a, b in pairs)
        rows = [
            ("scan fwd (s)", f"{ref_fwd:9.3f}", f"{fast_fwd:9.3f}", ref_fwd / fast_fwd, ""),
            (
                "scan fwd+bwd (s)",
                f"{ref_all:9.3f}",
                f"{fast_all:9.3f}",
                ref_all / fast_all,
                f"{diff:.1e}",
            ),
        ]
        for what, ref, fast, ratio, note in rows:
            print(f"{length:<4d} {what:<34} {ref:>9} {fast:>9} {ratio:8.2f}x  {note}")
        pools: list[tuple[str, np.ndarray | None]] = [("uniform 1..L", None)]
        per_user = sequence_lengths(args.data, DATASETS.get(length, ""))
        if per_user is not None:
            pools.append((DATASETS[length], loo_history_lengths(per_user, length)))
        for label, pool in pools:
            batch = batch_with_lengths(args.batch, length, args.items, pool)
            rates = {
                name: _model_rate(name, length, batch, args.items, args.reps) for name in SCANS
            }
            mean = float(batch.lengths.float().mean())
            cells = "  ".join(
                f"{name} {rate:6,.0f} ({rate / rates['reference']:.2f}x)"
                for name, rate in rates.items()
            )
            print(f"{length:<4d} Mamba4Rec seq/s, lengths {label} (mean {mean:.1f}): {cells}")


if __name__ == "__main__":
    main()
