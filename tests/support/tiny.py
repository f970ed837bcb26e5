"""Tiny configs of every registered model, for tests that run the whole registry."""

from __future__ import annotations

import dataclasses
from typing import Any

import models
from models.base import Recommender
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
