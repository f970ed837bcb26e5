"""Shared pieces of the benchmarks: a right-padded random batch (`gru4rec_paths.py`,
`sasrec_paths.py`) and the best-of-N timer (those two and `model_throughput.py`).

Imported by the scripts from their own folder (`python benchmarks/<name>.py` puts it first on
`sys.path`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from models.base import SeqBatch


def padded_batch(lengths: torch.Tensor, width: int, n_items: int, g: torch.Generator) -> SeqBatch:
    """Random right-padded histories of the given lengths (item 0 past each length)."""
    valid = torch.arange(width)[None, :] < lengths[:, None]
    items = torch.randint(1, n_items + 1, (len(lengths), width), generator=g) * valid
    targets = torch.randint(1, n_items + 1, (len(lengths),), generator=g)
    return SeqBatch(items, items * 0, lengths, lengths * 0, targets)


def best_of(step: Callable[[], object], reps: int = 3) -> float:
    """Seconds of the fastest of `reps` calls, after one warm-up call."""
    step()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best
