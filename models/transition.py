"""First-order item-to-item transitions: score next items by how often they followed the last one.

A count baseline (`trainable = False`). `observe` records, for each revealed event, the pair
(last history item → target) and the target's overall count. A request scores item j by

    c(last, j) + backoff · n_j / (N + 1)

where c counts observed transitions, n_j observed occurrences of j and N all observed events.
With `backoff` ≤ 1 the popularity term only orders items with equal transition counts, so new
users (empty history) and unseen last items still get a popularity ranking. Counts are not
time-windowed: every observed transition counts (the replay only observes revealed events).

Transitions are kept sparse: pending (prev, next) keys are merged into a sorted key/count table
on demand, and a request row is filled from that table's slice for its last item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.base import Recommender, SeqBatch
from models.registry import register
from streamsim.errors import ModelError


@dataclass(frozen=True)
class TransitionConfig:
    max_len: int = 50  # only the last history item is used
    backoff: float = 1e-3  # weight of the popularity share (≤ 1: a tie-breaker only)

    def __post_init__(self) -> None:
        if self.max_len < 1 or self.backoff < 0:
            msg = f"transition: need max_len >= 1 and backoff >= 0, got {self.max_len}, "
            msg += f"{self.backoff}"
            raise ModelError(msg)


@register("transition", TransitionConfig, "first-order item-to-item transition counts")
class Transition(Recommender):
    trainable = False

    def __init__(self, *, n_items: int, config: TransitionConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = config
        self.v = n_items + 1
        self.item_counts: np.ndarray = np.zeros(self.v, dtype=np.float64)
        self.keys: np.ndarray = np.zeros(0, dtype=np.int64)  # sorted prev·V + next
        self.counts: np.ndarray = np.zeros(0, dtype=np.float64)
        self._pending: list[np.ndarray] = []

    def _last_items(self, batch: SeqBatch) -> np.ndarray:
        items = batch.items.detach().cpu().numpy()
        n = batch.lengths.detach().cpu().numpy().astype(np.int64)
        if items.shape[1] == 0:
            return np.zeros(len(n), dtype=np.int64)
        last = items[np.arange(len(n)), np.clip(n - 1, 0, None)].astype(np.int64)
        return np.where(n > 0, last, 0)  # 0: no previous item

    def observe(self, batch: SeqBatch) -> None:
        """Count (last history item → target) pairs and target occurrences."""
        assert batch.targets is not None, "observe() needs a batch with targets"
        nxt = batch.targets.detach().cpu().numpy().astype(np.int64)
        if nxt.size and (nxt.min() < 1 or nxt.max() > self.n_items):
            msg = f"transition: targets must be item ids in [1, {self.n_items}], got {nxt}"
            raise ModelError(msg)
        np.add.at(self.item_counts, nxt, 1.0)
        prev = self._last_items(batch)
        keep = prev > 0
        self._pending.append(prev[keep] * self.v + nxt[keep])

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pending:
            new = np.concatenate(self._pending)
            self._pending = []
            keys = np.concatenate([self.keys, new])
            weights = np.concatenate([self.counts, np.ones(len(new))])
            self.keys, inverse = np.unique(keys, return_inverse=True)
            self.counts = np.bincount(inverse, weights=weights, minlength=len(self.keys))
        return self.keys, self.counts

    def score(self, batch: SeqBatch) -> Tensor:
        """(B, V) transition counts from the last item + popularity backoff; column 0 −inf."""
        keys, counts = self._table()
        prev = self._last_items(batch)
        pop = self.item_counts / (self.item_counts.sum() + 1.0)
        scores = np.tile(self.config.backoff * pop, (len(prev), 1))
        lo = np.searchsorted(keys, prev * self.v, side="left")
        hi = np.searchsorted(keys, (prev + 1) * self.v, side="left")
        for row in np.flatnonzero((hi > lo) & (prev > 0)):
            sl = slice(lo[row], hi[row])
            scores[row, keys[sl] - prev[row] * self.v] += counts[sl]
        out = torch.from_numpy(scores).to(torch.float32).to(batch.items.device)
        out[:, 0] = float("-inf")
        return out

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """The score matrix stands in for a representation (count models have no encoder)."""
        return self.score(batch), None

    def get_extra_state(self) -> Any:
        keys, counts = self._table()
        return {
            "item_counts": torch.from_numpy(self.item_counts.copy()),
            "keys": torch.from_numpy(keys.copy()),
            "counts": torch.from_numpy(counts.copy()),
        }

    def set_extra_state(self, state: Any) -> None:
        self.item_counts = state["item_counts"].numpy().astype(np.float64).copy()
        self.keys = state["keys"].numpy().astype(np.int64).copy()
        self.counts = state["counts"].numpy().astype(np.float64).copy()
        self._pending = []
