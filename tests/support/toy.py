"""A tiny model and dataset for engine tests (not registered: the registry stays the real one)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor, nn

from models.base import Recommender, SeqBatch
from streamsim.records import StepResult
from streamsim.replay import EventBatch
from streamsim.rng import seeded
from streamsim.store import write_dataset


@dataclass(frozen=True)
class ToyConfig:
    max_len: int = 6
    dim: int = 8


class ToyModel(Recommender):
    """Mean of the history's item embeddings plus a time feature; a label-free test-time loss."""

    name = "toy"
    has_test_time_loss = True

    def __init__(self, *, n_items: int, config: ToyConfig = ToyConfig()) -> None:
        super().__init__(n_items, config.max_len)
        self.emb = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
        self.proj = nn.Linear(config.dim + 1, config.dim)

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        mask = (batch.items > 0).unsqueeze(-1).to(self.emb.weight.dtype)  # (B, L, 1)
        total = (self.emb(batch.items) * mask).sum(1)
        mean = total / mask.sum(1).clamp_min(1.0)
        last = batch.times.gather(1, (batch.lengths - 1).clamp_min(0)[:, None])[:, 0]
        gap = ((batch.request_times - last).clamp_min(0).to(mean.dtype) / 86400.0)[:, None]
        return self.proj(torch.cat([mean, torch.log1p(gap)], dim=1)), None

    def item_table(self) -> Tensor:
        return self.emb.weight

    def test_time_loss(self, batch: SeqBatch) -> Tensor:
        rep, _ = self(batch)
        return (rep * rep).sum(1).mean()


def make_toy_model(n_items: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> ToyModel:
    with seeded(seed):
        return ToyModel(n_items=n_items).to(dtype).eval()


def toy_events(
    n_events: int = 400, n_users: int = 12, n_items: int = 20, seed: int = 0, late_items: int = 0
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Random events with increasing timestamps (ties included) and dense ids.

    With `late_items`, the last `late_items` item ids first appear at event 250 (inside a
    replay from START = 150), each soon repeated: new items entering the catalogue mid-stream.
    """
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    old = n_items - late_items
    items = rng.integers(1, old + 1, n_events)
    items[:old] = np.arange(1, old + 1)  # every old item appears early
    if late_items:
        late = slice(250, n_events)
        mixed = rng.integers(1, n_items + 1, n_events - 250)
        mixed[: 2 * late_items : 2] = np.arange(old + 1, n_items + 1)  # first appearances
        mixed[1 : 2 * late_items : 2] = np.arange(old + 1, n_items + 1)  # and a repeat
        items[late] = mixed
    users[:n_users] = np.arange(n_users)
    ts = 1_700_000_000 + np.cumsum(rng.integers(0, 3600, n_events))
    events = pa.table(
        {
            "idx": np.arange(n_events, dtype=np.int64),
            "user_id": users.astype(np.int32),
            "item_id": items.astype(np.int32),
            "ts": ts.astype(np.int64),
        }
    )
    user_tab = pa.table(
        {"user_id": np.arange(n_users, dtype=np.int32), "raw": [f"u{i}" for i in range(n_users)]}
    )
    item_tab = pa.table(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int32),
            "raw": [f"i{i}" for i in range(1, n_items + 1)],
        }
    )
    return events, user_tab, item_tab


def store_toy(con, name: str = "toy", **kwargs: int) -> None:  # type: ignore[no-untyped-def]
    events, users, items = toy_events(**kwargs)
    write_dataset(con, name, events=events, users=users, items=items, source="test", format="toy")


def waves(result: StepResult) -> np.ndarray:
    """(B,) each request's count of earlier requests of the same user in its micro-batch."""
    ev = result.events
    return EventBatch(result.batch.batch_id, ev.idx, ev.user_id, ev.item_id, ev.ts).waves
