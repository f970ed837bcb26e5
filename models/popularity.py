"""Recent popularity: score items by how often they were consumed shortly before the request.

A count baseline (`trainable = False`). Every revealed event (target item at its request time)
is fed through `observe`; a request at time t scores item i by the number of observed events of
i with timestamp in [t − window_s, t) — strictly before t, so an event at the request time or
later is never counted — plus, as a tie-breaker below one count, i's share of all observed events
before t. `window_s = 0` means all-time popularity (every event before t).

Events are kept as a time-sorted (ts, item) log; a batch of requests is answered by sliding the
window over that log in request-time order (each event enters and leaves once per batch), so a
batch costs O(B·V + events in the windows), with no per-item decay approximations.
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

WEEK_S = 7 * 86_400


@dataclass(frozen=True)
class PopularityConfig:
    max_len: int = 50  # histories are ignored; kept for the common interface
    window_s: int = WEEK_S  # popularity window in seconds (86400 = last day); 0 = all time
    tie_break: bool = True  # break equal window counts by all-time share (< 1 count)

    def __post_init__(self) -> None:
        if self.max_len < 1 or self.window_s < 0:
            msg = f"popularity: need max_len >= 1 and window_s >= 0, got {self.max_len}, "
            msg += f"{self.window_s}"
            raise ModelError(msg)


class EventLog:
    """A growing log of (ts, item) events, sorted by time on demand (stable)."""

    def __init__(self) -> None:
        self.ts = np.zeros(0, dtype=np.int64)
        self.items = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._sorted = True

    def __len__(self) -> int:
        return self._n

    def add(self, ts: np.ndarray, items: np.ndarray) -> None:
        k = len(ts)
        if k == 0:
            return
        if self._n + k > len(self.ts):  # amortised doubling
            cap = max(2 * len(self.ts), self._n + k, 1024)
            self.ts = np.resize(self.ts, cap)
            self.items = np.resize(self.items, cap)
        if self._sorted and (
            np.any(np.diff(ts) < 0) or (self._n > 0 and ts[0] < self.ts[self._n - 1])
        ):
            self._sorted = False
        self.ts[self._n : self._n + k] = ts
        self.items[self._n : self._n + k] = items
        self._n += k

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """(ts, items) of every event, sorted by time (ties keep arrival order)."""
        if not self._sorted:
            order = np.argsort(self.ts[: self._n], kind="stable")
            self.ts[: self._n] = self.ts[: self._n][order]
            self.items[: self._n] = self.items[: self._n][order]
            self._sorted = True
        return self.ts[: self._n], self.items[: self._n]

    def state(self) -> dict[str, Tensor]:
        ts, items = self.view()
        return {"ts": torch.from_numpy(ts.copy()), "items": torch.from_numpy(items.copy())}

    def load(self, state: dict[str, Tensor]) -> None:
        self.__init__()  # type: ignore[misc]
        self.add(state["ts"].numpy().astype(np.int64), state["items"].numpy().astype(np.int64))


def window_counts(
    ts: np.ndarray, items: np.ndarray, lo_t: np.ndarray, hi_t: np.ndarray, n_cols: int
) -> np.ndarray:
    """(B, n_cols) counts of `items` with time in [lo_t[b], hi_t[b]) for time-sorted `ts`.

    Both bounds must be non-decreasing in the same request order for the sliding update to hold;
    rows are visited in order of `hi_t` (then `lo_t`), which keeps both monotone when every
    window has the same width or starts at −inf.
    """
    lo = np.searchsorted(ts, lo_t, side="left")
    hi = np.searchsorted(ts, hi_t, side="left")  # strictly before hi_t
    out = np.zeros((len(hi_t), n_cols), dtype=np.float64)
    counts = np.zeros(n_cols, dtype=np.float64)
    cur_lo = cur_hi = 0
    for row in np.lexsort((lo, hi)):
        a, b = int(lo[row]), int(hi[row])
        if b > cur_hi:
            _add(counts, items[cur_hi:b], 1.0)
        if a > cur_lo:
            _add(counts, items[cur_lo:a], -1.0)
        cur_lo, cur_hi = max(a, cur_lo), max(b, cur_hi)
        out[row] = counts
    return out


def _add(counts: np.ndarray, items: np.ndarray, sign: float) -> None:
    """counts[items] += sign, repeats counted: `np.add.at` for a few items, one `np.bincount`
    for many (the first row of an all-time window adds the whole log; `np.add.at` is about ten
    times slower per element). Counts are integers in float64, so both give the same values."""
    if len(items) > 64:
        counts += sign * np.bincount(items, minlength=len(counts))[: len(counts)]
    else:
        np.add.at(counts, items, sign)


@register("popularity", PopularityConfig, "recent popularity: item counts in the last window_s")
class Popularity(Recommender):
    trainable = False
    observes_histories = False  # targets at their times only

    def __init__(self, *, n_items: int, config: PopularityConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = config
        self.log = EventLog()

    def observe(self, batch: SeqBatch) -> None:
        """Add the revealed events (`targets` at `request_times`) to the log."""
        assert batch.targets is not None, "observe() needs a batch with targets"
        items = batch.targets.detach().cpu().numpy().astype(np.int64)
        if items.size and (items.min() < 1 or items.max() > self.n_items):
            msg = f"popularity: targets must be item ids in [1, {self.n_items}], got {items}"
            raise ModelError(msg)
        self.log.add(batch.request_times.detach().cpu().numpy().astype(np.int64), items)

    def score(self, batch: SeqBatch) -> Tensor:
        """(B, V) window counts (+ all-time share as tie-breaker); column 0 is −inf."""
        req = batch.request_times.detach().cpu().numpy().astype(np.int64)
        ts, items = self.log.view()
        v = self.n_items + 1
        start = np.iinfo(np.int64).min // 2
        lo = req - self.config.window_s if self.config.window_s > 0 else np.full_like(req, start)
        scores = window_counts(ts, items, lo, req, v)
        if self.config.tie_break and self.config.window_s > 0:
            alltime = window_counts(ts, items, np.full_like(req, start), req, v)
            scores += alltime / (alltime.sum(axis=1, keepdims=True) + 1.0)
        out = torch.from_numpy(scores).to(torch.float32).to(batch.request_times.device)
        out[:, 0] = float("-inf")
        return out

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """The score matrix stands in for a representation (count models have no encoder)."""
        return self.score(batch), None

    def get_extra_state(self) -> Any:
        return self.log.state()

    def set_extra_state(self, state: Any) -> None:
        self.log.load(state)
