"""History lengths for the speed benchmarks: uniform, or those of the real LOO training examples.

Models that skip right padding (`lengths` in `models.selective_scan` and `models.ttt`) run as fast
as their batches are short, so their benchmarks draw history lengths from the staged datasets
when `--data` holds them: amazon-beauty-5core at L = 50 and ml-100k at L = 200, as in the LOO
tables. `scan_all_positions` is the baseline the padding-skipping scan is measured against.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.base import SeqBatch
from models.selective_scan import selective_scan

# the dataset whose lengths each L of the LOO tables uses
DATASETS = {50: "amazon-beauty-5core", 200: "ml-100k"}


def sequence_lengths(data: Path, dataset: str) -> list[int] | None:
    """Events per user of a staged dataset, or None when it is not there."""
    if dataset == "ml-100k" and (data / dataset / "u.data").exists():
        lines = (data / dataset / "u.data").read_text().splitlines()
        return list(Counter(line.split()[0] for line in lines).values())
    path = data / dataset / "Beauty_item_org_rank.txt"
    if dataset == "amazon-beauty-5core" and path.exists():
        return [len(line.split()) - 1 for line in path.read_text().splitlines() if line.strip()]
    return None


def loo_history_lengths(per_user: list[int], max_len: int) -> np.ndarray:
    """History length of every LOO training example: targets 1..n−3 of a user of n events."""
    return np.minimum(np.concatenate([np.arange(1, n - 2) for n in per_user if n > 3]), max_len)


def batch_with_lengths(
    bsz: int, length: int, n_items: int, pool: np.ndarray | None = None
) -> SeqBatch:
    """A random training batch of width L: lengths uniform in 1..L, or drawn from `pool`."""
    g = torch.Generator().manual_seed(1)
    if pool is None:
        lengths = torch.randint(1, length + 1, (bsz,), generator=g)
    else:
        pick = np.random.default_rng(1).choice(len(pool), bsz, replace=False)
        lengths = torch.from_numpy(pool[pick]).long()
    valid = torch.arange(length)[None, :] < lengths[:, None]
    items = torch.randint(1, n_items + 1, (bsz, length), generator=g) * valid
    times = 1_600_000_000 + torch.cumsum(torch.randint(0, 86_400, (bsz, length), generator=g), 1)
    targets = torch.randint(1, n_items + 1, (bsz,), generator=g)
    return SeqBatch(items, times * valid, lengths, times[:, -1] + 3_600, targets)


def scan_all_positions(
    *args: Any, lengths: Tensor | None = None, **kw: Any
) -> tuple[Tensor, Tensor]:
    """`selective_scan` before it took lengths: Δ zeroed on padding, every position scanned."""
    if lengths is not None:
        u, dt = args[0], args[1]
        mask = torch.arange(u.shape[1])[None, :] < lengths[:, None]
        args = (u, dt * mask[..., None], *args[2:])
    return selective_scan(*args, **kw)
