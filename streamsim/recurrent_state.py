"""Streaming state: score a recurrent model's request from the user's cached state in O(1).

A recurrent model (T2ARec, Mamba4Rec) turns a history into its representation o_n by a
recurrence, and `step(item, time, state)` appends one event to it exactly as `forward` would on
the longer history (each model's contract test). With frozen weights — policy ``none`` — the
replay can therefore keep, per user, the state after their last revealed event and its o_n:
scoring a request is then o_n · itemsᵀ, with no pass over the history, and revealing an event
is one `step` (`[replay] recurrent_state = true`).

When it equals recomputation, and when it does not: the model scores the last `max_len` events
of a history, while a state remembers every event since the first. So the cache is exact (to
floating-point tolerance: a recurrence instead of the chunked scan) for every user whose history
fits in `max_len`; a user with more events is scored by recomputing their window, as without
the cache (`recomputed` counts them). With adapting weights the cached states would be those of
θ₀ while the scores need θ′: policies other than ``none`` (and online learning) recompute.

The states live in one batch-first structure for all users (the model's own state type, its
tensors indexed by user): T2ARec keeps, per user, its conv window, h_n (heads × head dim × state
size) and x_n; memory is n_users × that plus o_n: about 10 KB per user for the default T2ARec
(d_model 64), 18 KB for the default Mamba4Rec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.base import Recommender, SeqBatch
from streamsim.errors import ScenarioError
from streamsim.history import HistoryBuffer

STREAMING_MODELS = ("t2arec", "mamba4rec")  # recurrent, batch-first states, default `score`


def check_model(model: Recommender) -> None:
    """`ScenarioError` unless `model` can be scored from a cached recurrent state."""
    if model.name not in STREAMING_MODELS:
        msg = (
            f"[replay] recurrent_state = true: expected a recurrent model with a step"
            f" ({list(STREAMING_MODELS)}), got {model.name!r}"
        )
        raise ScenarioError(msg)


def _map(fn: Callable[..., Tensor], *trees: Any) -> Any:
    """Apply `fn` to the tensors of (named) tuples of tensors, keeping the structure."""
    first = trees[0]
    if isinstance(first, Tensor):
        return fn(*trees)
    parts = [_map(fn, *xs) for xs in zip(*trees, strict=True)]
    return type(first)(*parts) if hasattr(first, "_fields") else type(first)(parts)


def _leaves(tree: Any) -> list[Tensor]:
    if isinstance(tree, Tensor):
        return [tree]
    return [leaf for x in tree for leaf in _leaves(x)]


class RecurrentStateCache:
    """Per-user recurrent state and representation of a frozen model.

    Parameters
    ----------
    model
        The frozen model (`check_model`); its weights must not change while the cache is used.
    n_users
        Dense user ids ``0..n_users-1``.
    """

    def __init__(self, model: Recommender, *, n_users: int) -> None:
        check_model(model)
        self.model = model
        self.max_len = model.max_len
        with torch.no_grad():
            self.states = model.initial_state(n_users)  # type: ignore[operator]
            empty = SeqBatch(
                torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
                torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
            )  # fmt: skip
            o_empty, _ = model(empty)
        self.reps = o_empty.expand(n_users, -1).clone()  # (U, D) o_n of each user
        self.counts = np.zeros(n_users, dtype=np.int64)  # events revealed per user
        self.recomputed = 0  # requests scored by recomputing (history longer than max_len)

    def reveal(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        """Append events in order: one batched `step` per wave of distinct users."""
        if len(users) == 0:
            return
        order = np.argsort(users, kind="stable")
        sorted_users = users[order]
        starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
        rank = np.empty(len(users), dtype=np.int64)
        rank[order] = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
        # a user whose history outgrows the window is recomputed from then on: no step for them
        inside = self.counts[users] + rank < self.max_len
        with torch.no_grad():
            for wave in range(int(rank.max()) + 1):
                rows = np.flatnonzero((rank == wave) & inside)  # each user at most once, in order
                if len(rows) == 0:
                    continue
                idx = torch.from_numpy(users[rows])
                state = _map(lambda t, i=idx: t[i], self.states)
                rep, new = self.model.step(  # type: ignore[operator]
                    torch.from_numpy(items[rows]), torch.from_numpy(times[rows]), state
                )
                _map(lambda t, n, i=idx: t.index_copy_(0, i, n.to(t.dtype)), self.states, new)
                self.reps.index_copy_(0, idx, rep.to(self.reps.dtype))
        np.add.at(self.counts, users, 1)

    def count(self, users: np.ndarray) -> None:
        """Count revealed events without stepping (a warm-up, before `rebuild`)."""
        np.add.at(self.counts, users, 1)

    def rebuild(self, history: HistoryBuffer, *, chunk: int = 1024) -> None:
        """Every user's state and o_n from one batched `forward` over their current window:
        exact for users whose whole history fits in it (the others are recomputed when
        scored). Used after a warm-up, where stepping event by event would take as many
        batched steps as the most active user has events."""
        with torch.no_grad():
            for lo in range(0, len(self.counts), chunk):
                users = np.arange(lo, min(lo + chunk, len(self.counts)))
                batch = history.batch(users, np.zeros(len(users), dtype=np.int64))
                rep, state = self.model(batch)
                idx = torch.from_numpy(users)
                _map(lambda t, n, i=idx: t.index_copy_(0, i, n.to(t.dtype)), self.states, state)
                self.reps.index_copy_(0, idx, rep.to(self.reps.dtype))

    def score(self, users: np.ndarray, batch: SeqBatch) -> Tensor:
        """(B, V) scores of the requests of `users` (their histories in `batch`): from the cached
        representations, and by recomputing the window for users with more than `max_len`
        events."""
        with torch.no_grad():
            scores = self.reps[torch.from_numpy(users)] @ self.model.item_table().T
            scores[:, 0] = float("-inf")
            long = np.flatnonzero(self.counts[users] > self.max_len)
            if len(long):
                self.recomputed += len(long)
                rows = torch.from_numpy(long)
                scores[rows] = self.model.score(batch.subset(rows)).to(scores.dtype)
        return scores

    def state(self) -> dict[str, Tensor]:
        """The cache as tensors (for a resumed replay)."""
        out = {f"state{k}": t for k, t in enumerate(_leaves(self.states))}
        return out | {"reps": self.reps, "counts": torch.from_numpy(self.counts.copy()),
                      "recomputed": torch.tensor(self.recomputed)}  # fmt: skip

    def load_state(self, state: dict[str, Tensor]) -> None:
        leaves = iter(state[f"state{k}"] for k in range(len(_leaves(self.states))))
        self.states = _map(lambda _t: next(leaves).clone(), self.states)
        self.reps = state["reps"].clone()
        self.counts = state["counts"].numpy().copy()
        self.recomputed = int(state["recomputed"])
