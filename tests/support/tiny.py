"""Tiny configs of every registered model, for tests that run the whole registry."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

import models
from models.base import Recommender, SeqBatch
from streamsim.rng import seeded

# smaller hidden sizes where the defaults would slow registry-wide tests down
SIZES: dict[str, dict[str, Any]] = {
    "t2arec": {"d_model": 16, "d_state": 8, "chunk": 4, "time_block": 4, "headdim": 8},
    "mamba4rec": {"d_model": 16, "d_state": 8},
    "sasrec": {"hidden_size": 16, "inner_size": 32},
    "gru4rec": {"embedding_size": 16, "hidden_size": 24},
    "caser": {"embedding_size": 8, "n_v": 2, "n_h": 3},
    "bert4rec": {"hidden_size": 8, "inner_size": 16},
    "ttt4rec": {"hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "mini_batch_size": 3},
    "ttt_linear_rec": {"hidden_size": 8, "num_heads": 2, "mini_batch_size": 3},
    "tim4rec": {"d_model": 16, "d_state": 8, "headdim": 8, "chunk": 4},
}
NAMES = [entry.name for entry in models.list_models()]


def tiny_config(name: str, max_len: int) -> dict[str, Any]:
    """`max_len`, the pure-PyTorch backend and the tiny sizes, for the keys the model has."""
    known = {f.name for f in dataclasses.fields(models.get(name).config_cls)}
    wanted = {"max_len": max_len, "backend": "torch", **SIZES.get(name, {})}
    return {k: v for k, v in wanted.items() if k in known}


def build_tiny(name: str, *, n_items: int, max_len: int, seed: int = 0) -> Recommender:
    with seeded(seed):
        model = models.create(name, n_items=n_items, config=tiny_config(name, max_len))
    return model.eval()


def random_seq_batch(
    n_items: int, seq: int, lengths: tuple[int, ...], *, seed: int = 0
) -> SeqBatch:
    """Histories of the given lengths (0: empty) over items 1..n_items with gaps of up to 3 days,
    requests a row-dependent few seconds to hours after the last event, drawn from `seed`."""
    day = 86_400
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor(lengths)
    valid = torch.arange(seq)[None, :] < n[:, None]
    items = torch.randint(1, n_items + 1, (len(lengths), seq), generator=g) * valid
    gaps = torch.randint(0, 3 * day, (len(lengths), seq), generator=g)
    times = (1_600_000_000 + torch.cumsum(gaps, dim=1)) * valid
    start = torch.full((len(lengths),), 1_600_000_000)
    request = torch.where(n > 0, times.max(dim=1).values, start) + 1 + (n * 7) % day
    targets = torch.randint(1, n_items + 1, (len(lengths),), generator=g)
    return SeqBatch(items, times, n, request, targets)
