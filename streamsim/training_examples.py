"""Supervised next-item examples from a stored dataset, in replay order (RecBole augmentation).

Every event after a user's first becomes one example: the user's previous <= L events (oldest
first) -> this event's item, with this event's timestamp as the request time t_{n+1}. Histories
are built causally by walking the events in replay order, so an example never contains an event
that comes after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import torch

from models.base import Recommender, SeqBatch
from streamsim.history import HistoryBuffer
from streamsim.ranking import rank_metrics, target_ranks
from streamsim.store import dataset_info, iter_events


@dataclass(frozen=True)
class Examples:
    """N examples as arrays (kept in numpy; `batches` turns slices into `SeqBatch`es)."""

    items: np.ndarray  # (N, L) int64, right-padded with 0
    times: np.ndarray  # (N, L) int64
    lengths: np.ndarray  # (N,) int64
    request_times: np.ndarray  # (N,) int64
    targets: np.ndarray  # (N,) int64
    known: np.ndarray  # (N_items + 1,) bool: items seen before the first collected example

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batch(self, index: np.ndarray) -> SeqBatch:
        return SeqBatch(
            items=torch.from_numpy(self.items[index]),
            times=torch.from_numpy(self.times[index]),
            lengths=torch.from_numpy(self.lengths[index]),
            request_times=torch.from_numpy(self.request_times[index]),
            targets=torch.from_numpy(self.targets[index]),
        )

    def batches(
        self, batch_size: int, *, rng: np.random.Generator | None = None, device: str = "cpu"
    ) -> Iterator[SeqBatch]:
        """Consecutive batches (replay order), or shuffled ones when `rng` is given."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for start in range(0, len(self), batch_size):
            batch = self.batch(order[start : start + batch_size])
            yield batch if device == "cpu" else batch.to(device)


def build_examples(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    *,
    max_len: int,
    collect_start: int,
    collect_stop: int,
    include_cold_users: bool = False,
    history_start: int = 0,
) -> Examples:
    """Examples whose targets are events ``collect_start <= idx < collect_stop``.

    Histories use every earlier event from `history_start` on (the start of the pretraining
    period; events before it are not read). Events of a user's first interaction (empty
    history) are skipped unless `include_cold_users`.
    """
    info = dataset_info(con, dataset)
    buf = HistoryBuffer(n_users=info.n_users, n_items=info.n_items, max_len=max_len)
    rows: dict[str, list[Any]] = {k: [] for k in ("items", "times", "len", "req", "tgt")}
    known: np.ndarray | None = None
    for batch in iter_events(con, dataset, start_idx=history_start, stop_idx=collect_stop):
        idx = batch.column("idx").to_numpy()
        users = batch.column("user_id").to_numpy().astype(np.int64)
        items = batch.column("item_id").to_numpy().astype(np.int64)
        ts = batch.column("ts").to_numpy()
        for i, u, it, t in zip(idx.tolist(), users.tolist(), items.tolist(), ts.tolist()):
            if i == collect_start:
                known = buf.known.copy()
            if i >= collect_start and (include_cold_users or buf.lengths[u] > 0):
                rows["items"].append(buf.items[u].copy())
                rows["times"].append(buf.times[u].copy())
                rows["len"].append(buf.lengths[u].copy())
                rows["req"].append(np.int64(t))
                rows["tgt"].append(np.int64(it))
            buf.append(u, it, t)
    if known is None:  # no event at or after collect_start was read
        known = buf.known.copy()
    return stack_examples(rows, max_len, known)


def stack_examples(rows: dict[str, list[Any]], max_len: int, known: np.ndarray) -> Examples:
    """Examples from per-request rows (keys items, times, len, req, tgt); none: empty arrays."""
    if not rows["tgt"]:
        empty = np.zeros((0, max_len), dtype=np.int64)
        none = np.zeros(0, dtype=np.int64)
        return Examples(empty, empty.copy(), none, none.copy(), none.copy(), known)
    return Examples(
        items=np.stack(rows["items"]),
        times=np.stack(rows["times"]),
        lengths=np.asarray(rows["len"], dtype=np.int64),
        request_times=np.asarray(rows["req"], dtype=np.int64),
        targets=np.asarray(rows["tgt"], dtype=np.int64),
        known=known,
    )


@torch.no_grad()
def evaluate_examples(
    model: Recommender, examples: Examples, *, batch_size: int, device: str = "cpu"
) -> dict[str, float]:
    """Full-ranking HR/NDCG/MRR @10 (+HR@50) of `model` on `examples` (catalogue: `known`)."""
    if len(examples) == 0:
        return {"n": 0.0, "hr@10": float("nan"), "ndcg@10": float("nan"), "mrr@10": float("nan")}
    model.eval()
    outside = torch.from_numpy(~examples.known).to(device)
    sums = {"hit10": 0.0, "hit50": 0.0, "ndcg10": 0.0, "rr10": 0.0}
    for batch in examples.batches(batch_size, device=device):
        scores = model.score(batch.without_targets()).clone()
        scores[:, outside] = float("-inf")
        assert batch.targets is not None
        metrics = rank_metrics(target_ranks(scores, batch.targets))
        for k in sums:
            sums[k] += float(metrics[k].to(torch.float64).sum())
    n = float(len(examples))
    return {
        "n": n,
        "hr@10": sums["hit10"] / n,
        "hr@50": sums["hit50"] / n,
        "ndcg@10": sums["ndcg10"] / n,
        "mrr@10": sums["rr10"] / n,
    }
