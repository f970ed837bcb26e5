"""Per-user causal history buffers: the only place a replay keeps what users did before.

Each user owns a fixed-length window of their last `max_len` events (items and timestamps, oldest
first). `batch(users, request_times)` copies the windows of a micro-batch's users into a
`SeqBatch` (right-padded with item 0); `append` reveals events after they were scored. The buffer
also tracks which items exist so far (the catalogue known at request time) and, per user, every
item ever consumed (repeat vs explore targets, and the optional `exclude_seen` mask).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.base import SeqBatch


class HistoryBuffer:
    """Fixed-length per-user histories plus the catalogue and per-user item sets seen so far.

    Parameters
    ----------
    n_users, n_items
        Dense id ranges: users ``0..n_users-1``, items ``1..n_items`` (0 is padding).
    max_len
        Events kept per user (the model's maximum history length L).

    Examples
    --------
    >>> buf = HistoryBuffer(n_users=2, n_items=5, max_len=3)
    >>> for item, ts in [(1, 10), (2, 20), (3, 30), (4, 40)]:
    ...     buf.append(0, item, ts)
    >>> b = buf.batch(np.array([0, 1]), np.array([50, 50]))
    >>> b.items.tolist(), b.lengths.tolist()
    ([[2, 3, 4], [0, 0, 0]], [3, 0])
    >>> bool(buf.known[4]), bool(buf.known[5]), buf.has_seen(0, 1)
    (True, False, True)
    """

    def __init__(self, *, n_users: int, n_items: int, max_len: int) -> None:
        self.max_len = max_len
        self.items = np.zeros((n_users, max_len), dtype=np.int64)  # (U, L) oldest first
        self.times = np.zeros((n_users, max_len), dtype=np.int64)  # (U, L)
        self.lengths = np.zeros(n_users, dtype=np.int64)  # (U,)
        self.known = np.zeros(n_items + 1, dtype=bool)  # (V,) items seen anywhere so far
        self._seen: list[set[int]] = [set() for _ in range(n_users)]
        # the same (user, item) pairs in first-seen order, so that saving the state is one
        # array conversion, not a walk over every set (which made long replays' saves slow)
        self._pair_users: list[int] = []
        self._pair_items: list[int] = []

    def append(self, user: int, item: int, ts: int) -> None:
        """Reveal one event: it joins the user's window, the catalogue and the user's item set."""
        n = self.lengths[user]
        if n < self.max_len:
            self.items[user, n] = item
            self.times[user, n] = ts
            self.lengths[user] = n + 1
        else:  # window full: drop the oldest event
            self.items[user, :-1] = self.items[user, 1:]
            self.times[user, :-1] = self.times[user, 1:]
            self.items[user, -1] = item
            self.times[user, -1] = ts
        self.known[item] = True
        seen = self._seen[user]
        if item not in seen:
            seen.add(item)
            self._pair_users.append(user)
            self._pair_items.append(item)

    def extend(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        """Reveal events in order (a Python loop: histories of one user must stay sequential)."""
        for u, i, t in zip(users.tolist(), items.tolist(), times.tolist()):
            self.append(u, i, t)

    def has_seen(self, user: int, item: int) -> bool:
        return item in self._seen[user]

    def seen_items(self, user: int) -> list[int]:
        return sorted(self._seen[user])

    def batch(self, users: np.ndarray, request_times: np.ndarray) -> SeqBatch:
        """Copies of the users' current windows as a `SeqBatch` (no targets)."""
        return SeqBatch(
            items=torch.from_numpy(self.items[users].copy()),  # (B, L)
            times=torch.from_numpy(self.times[users].copy()),  # (B, L)
            lengths=torch.from_numpy(self.lengths[users].copy()),  # (B,)
            request_times=torch.from_numpy(np.asarray(request_times, dtype=np.int64).copy()),
        )

    def state(self) -> dict[str, Tensor]:
        """Everything needed to resume, as tensors (safe to load: no pickled objects); the
        consumed items as two parallel columns (user, item)."""
        users = np.asarray(self._pair_users, dtype=np.int64)
        items = np.asarray(self._pair_items, dtype=np.int64)
        arrays = {
            "items": self.items, "times": self.times, "lengths": self.lengths,
            "known": self.known, "seen_users": users, "seen_items": items,
        }  # fmt: skip
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.items = state["items"].numpy().copy()
        self.times = state["times"].numpy().copy()
        self.lengths = state["lengths"].numpy().copy()
        self.known = state["known"].numpy().copy()
        self._seen = [set() for _ in range(len(self._seen))]
        self._pair_users = state["seen_users"].tolist()
        self._pair_items = state["seen_items"].tolist()
        for user, item in zip(self._pair_users, self._pair_items, strict=True):
            self._seen[user].add(item)
