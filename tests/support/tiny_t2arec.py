"""A tiny float64 T2ARec and a random batch for its unit tests (losses, options, gradients)."""

from __future__ import annotations

from typing import Any

import torch

import models
from models.base import SeqBatch
from models.t2arec import T2ARec

DAY = 86_400
TINY: dict[str, Any] = {
    "max_len": 7,
    "d_model": 8,
    "d_state": 4,
    "dropout": 0.0,
    "chunk": 3,
    "time_block": 4,
    "headdim": 4,
    "backend": "torch",
}


def tiny_t2arec(**overrides: Any) -> T2ARec:
    """TINY with `overrides`, in float64 and eval mode, over 12 items."""
    model = models.create("t2arec", n_items=12, config={**TINY, **overrides})
    assert isinstance(model, T2ARec)
    return model.double().eval()


def random_batch(seed: int = 0, lengths: tuple[int, ...] = (7, 4, 1, 0), seq: int = 7) -> SeqBatch:
    """Histories of the given lengths (0: empty) with gaps of up to 5 days, drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor(lengths)
    valid = torch.arange(seq)[None, :] < n[:, None]
    items = torch.randint(1, 13, (len(lengths), seq), generator=g) * valid
    gaps = torch.randint(0, 5 * DAY, (len(lengths), seq), generator=g)
    times = (1_600_000_000 + torch.cumsum(gaps, dim=1)) * valid
    last = times.max(dim=1).values
    request = torch.where(n > 0, last, 1_600_000_000)
    request = request + torch.randint(1, 3 * DAY, (len(lengths),), generator=g)
    targets = torch.randint(1, 13, (len(lengths),), generator=g)
    return SeqBatch(items, times, n, request, targets)
