"""The prequential replay loop: micro-batches of consecutive events, each adapted, scored, revealed.

For every micro-batch, in this order and only here (`ReplayEngine.step`):

1. **inputs**: each request's causal history (every event revealed before the micro-batch) and
   its request time; never its target.
2. **adapt**: the policy's test-time adaptation on those inputs (`streamsim.adapt.Adapter`).
3. **score**: full-catalogue scores; items unknown at request time and, with `exclude_seen`,
   the user's own past items are set to -inf; the target's rank is recorded
   (`streamsim.ranking`). Then ``reset`` restores the weights. "Known at request time" is per
   request: an item revealed by an earlier event of the same micro-batch is in the catalogue of
   the later requests (never of its own or earlier ones), so catalogues and cold targets do not
   depend on the batch size.
4. **reveal**: the targets join the histories and the catalogue; count models `observe` them;
   an optional online supervised update learns from them.
5. **detect**: river detectors are fed the batch's per-event and per-batch signals (the
   label-free ones: the test-time loss on the inputs before any step, the mean Δ_{n+1}; their
   time is counted in this stage).

Micro-batches never hold two requests of the same user: the batcher closes a batch before a
user's second event, so every request sees exactly the events before it (and a second request
of a user sees the first only after it was scored and revealed). Consequently every input event
has a timestamp <= the micro-batch's earliest request time (PROTOCOL.md P2), and for models that
read only the request's own history (every neural model under policy ``none``) the ranks are the
same whatever the batch size: the naive one-event-at-a-time reference in the tests. What does
depend on the batch size is when learning happens: count models (`observe`), online updates and
test-time adaptation see a micro-batch's events only after the whole micro-batch was scored.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from models.base import Recommender, SeqBatch
from streamsim.adapt import Adapter, AdaptStats
from streamsim.drift import BATCH_SIGNALS, Watch, feed, make_detector
from streamsim.history import HistoryBuffer
from streamsim.ranking import rank_metrics, target_ranks, topk_entropy
from streamsim.scenario import DetectorSpec, PolicySpec, ReplaySpec


@dataclass(frozen=True)
class EventBatch:
    """One micro-batch of consecutive events (replay order)."""

    batch_id: int
    idx: np.ndarray  # (B,) int64 replay indices
    users: np.ndarray  # (B,) int64
    items: np.ndarray  # (B,) int64 targets
    ts: np.ndarray  # (B,) int64 request times

    def __len__(self) -> int:
        return int(self.idx.shape[0])


@dataclass(frozen=True)
class BatchResult:
    """What one micro-batch produced: per-event records, per-batch health, alarms."""

    batch: EventBatch
    ranks: np.ndarray  # (B,) int64, 1-based
    hit10: np.ndarray
    hit50: np.ndarray
    ndcg10: np.ndarray
    rr10: np.ndarray
    is_repeat: np.ndarray
    is_cold: np.ndarray
    top1: np.ndarray
    adapt: AdaptStats
    tta_loss: float | None  # label-free loss on the inputs before any step (detector signal)
    delta_next_mean: float | None
    topk_entropy: float
    coverage: float
    param_distance: float
    backward_passes: int
    seconds: dict[str, float]
    alarms: list[tuple[str, str, int, int]] = field(default_factory=list)  # name, signal, idx, ts


def micro_batches(
    events: Iterator[pa.RecordBatch], spec: ReplaySpec, *, first_batch_id: int = 0
) -> Iterator[EventBatch]:
    """Group events (replay order) into micro-batches by count or time window.

    A batch closes when it holds `batch_events` events (count mode), when the next event falls
    outside the time window opened by the batch's first event or the batch reaches
    `max_batch_events` (window mode), or when the next event's user already has a request in it.
    """
    batch_id = first_batch_id
    idx: list[int] = []
    users: list[int] = []
    items: list[int] = []
    ts: list[int] = []
    present: set[int] = set()

    def emit() -> EventBatch:
        return EventBatch(
            batch_id,
            np.asarray(idx, dtype=np.int64),
            np.asarray(users, dtype=np.int64),
            np.asarray(items, dtype=np.int64),
            np.asarray(ts, dtype=np.int64),
        )

    limit = spec.batch_events if spec.batch_window_s is None else spec.max_batch_events
    for record in events:
        cols = [record.column(c).to_numpy().tolist() for c in ("idx", "user_id", "item_id", "ts")]
        for i, u, it, t in zip(*cols):
            full = len(idx) >= limit
            outside = spec.batch_window_s is not None and idx and t >= ts[0] + spec.batch_window_s
            if idx and (full or outside or u in present):
                yield emit()
                batch_id += 1
                idx, users, items, ts, present = [], [], [], [], set()
            idx.append(i)
            users.append(u)
            items.append(it)
            ts.append(t)
            present.add(u)
    if idx:
        yield emit()


def batch_seed(seed: int, batch_id: int) -> int:
    """A per-batch seed that depends only on (seed, batch id): resumable and deterministic."""
    digest = hashlib.sha256(f"{seed}:{batch_id}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


class ReplayEngine:
    """The state of one replay (model, adapter, histories, detectors) and its per-batch step."""

    def __init__(
        self,
        model: Recommender,
        policy: PolicySpec,
        spec: ReplaySpec,
        detectors: tuple[DetectorSpec, ...],
        *,
        n_users: int,
        n_items: int,
        seed: int,
    ) -> None:
        self.model = model.eval()
        self.policy = policy
        self.spec = spec
        self.seed = seed
        self.adapter = Adapter(model, policy)  # with the policy's sample filter, if any
        self.history = HistoryBuffer(n_users=n_users, n_items=n_items, max_len=model.max_len)
        self.watches: list[Watch] = [make_detector(d, seed=seed) for d in detectors]
        self.next_idx = 0  # first replay index not processed yet
        self.next_batch_id = 0
        self.n_replayed = 0  # events stepped through (the resume position under tie shuffling)

    # -- warm-up ----------------------------------------------------------------------------------
    def warm_up(self, events: Iterator[pa.RecordBatch], *, observe_from: int = 0) -> None:
        """Reveal the events before the replay period (histories; count models from
        `observe_from` on)."""
        for record in events:
            users = record.column("user_id").to_numpy().astype(np.int64)
            items = record.column("item_id").to_numpy().astype(np.int64)
            ts = record.column("ts").to_numpy().astype(np.int64)
            idx = record.column("idx").to_numpy()
            if not self.model.trainable:
                for lo, hi in _runs_without_repeats(users):
                    if idx[hi - 1] >= observe_from:
                        keep = idx[lo:hi] >= observe_from
                        sel = np.arange(lo, hi)[keep]
                        batch = self.history.batch(users[sel], ts[sel])
                        self.model.observe(_with_targets(batch, items[sel]))
                    self.history.extend(users[lo:hi], items[lo:hi], ts[lo:hi])
            else:
                self.history.extend(users, items, ts)
            self.next_idx = int(idx[-1]) + 1

    # -- one micro-batch: the five stages, in order -----------------------------------------------
    def step(self, eb: EventBatch) -> BatchResult:
        seconds: dict[str, float] = {}
        users, targets = eb.users, torch.from_numpy(eb.items)
        # 1. inputs: causal histories + request times, no targets
        inputs = self.history.batch(users, eb.ts)
        is_repeat = np.fromiter(
            (self.history.has_seen(u, i) for u, i in zip(users.tolist(), eb.items.tolist())),
            dtype=bool,
            count=len(eb),
        )
        outside, first_seen = _catalogue(self.history.known, eb.items)
        is_cold = np.fromiter(  # unknown at its request: never revealed before it
            (first_seen.get(i) == pos for pos, i in enumerate(eb.items.tolist())),
            dtype=bool,
            count=len(eb),
        )
        # 2. adapt on the inputs
        t0 = time.perf_counter()
        adapt = self.adapter.adapt(inputs, outside=torch.from_numpy(~self.history.known))
        seconds["adapt"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tta_loss, delta = self._label_free_signals(inputs, adapt)  # with the adapted weights
        seconds["signals"] = time.perf_counter() - t0
        # 3. score against the catalogue known now
        t0 = time.perf_counter()
        with torch.no_grad():
            scores = self.model.score(inputs).clone()  # (B, V)
        scores[:, torch.from_numpy(outside)] = float("-inf")
        for item, pos in first_seen.items():  # new in this batch: known from the next request on
            scores[: pos + 1, item] = float("-inf")
        if self.spec.exclude_seen:
            for row, user in enumerate(users.tolist()):
                scores[row, self.history.seen_items(user)] = float("-inf")
        ranks = target_ranks(scores, targets)
        metrics = rank_metrics(ranks)
        top10 = scores.topk(min(10, scores.shape[1]), dim=1).indices
        entropy = float(topk_entropy(scores).mean())
        coverage = float(torch.unique(top10).numel()) / max(int(self.history.known.sum()), 1)
        self.adapter.after_scoring()  # reset: restore weights + optimizer
        seconds["score"] = time.perf_counter() - t0
        # 4. reveal: histories, catalogue, count models, online update
        t0 = time.perf_counter()
        revealed = _with_targets(inputs, eb.items)
        self.history.extend(users, eb.items, eb.ts)
        self.model.observe(revealed)
        backward = adapt.backward_passes + self.adapter.learn(
            revealed, seed=batch_seed(self.seed, eb.batch_id)
        )
        seconds["reveal"] = time.perf_counter() - t0
        # 5. detect
        t0 = time.perf_counter()
        alarms = self._detect(eb, metrics, tta_loss, entropy)
        seconds["detect"] = time.perf_counter() - t0 + seconds.pop("signals")
        self.next_idx = int(eb.idx[-1]) + 1
        self.next_batch_id = eb.batch_id + 1
        self.n_replayed += len(eb)
        return BatchResult(
            batch=eb,
            ranks=ranks.numpy(),
            hit10=metrics["hit10"].numpy(),
            hit50=metrics["hit50"].numpy(),
            ndcg10=metrics["ndcg10"].numpy(),
            rr10=metrics["rr10"].numpy(),
            is_repeat=is_repeat,
            is_cold=is_cold,
            top1=top10[:, 0].numpy(),
            adapt=adapt,
            tta_loss=tta_loss,
            delta_next_mean=delta,
            topk_entropy=entropy,
            coverage=coverage,
            param_distance=self.adapter.param_distance(),
            backward_passes=backward,
            seconds=seconds,
            alarms=alarms,
        )

    def _label_free_signals(
        self, inputs: SeqBatch, adapt: AdaptStats
    ) -> tuple[float | None, float | None]:
        """The test-time loss before adaptation and the mean Delta_{n+1}, if the model has them."""
        if not self.model.has_test_time_loss:
            return None, None
        tta_loss = adapt.loss_before
        delta = None
        with torch.no_grad():
            if tta_loss is None:
                tta_loss = float(self.model.test_time_loss(inputs))
            aligner = getattr(self.model, "alignment_losses", None)
            if callable(aligner):
                delta = float(aligner(inputs)[2].mean())
        return tta_loss, delta

    def _detect(
        self,
        eb: EventBatch,
        metrics: dict[str, torch.Tensor],
        tta_loss: float | None,
        entropy: float,
    ) -> list[tuple[str, str, int, int]]:
        alarms: list[tuple[str, str, int, int]] = []
        per_batch = {"tta_loss": tta_loss, "topk_entropy": entropy}
        positions = eb.idx.tolist()
        for watch in self.watches:
            signal = watch.spec.signal
            if signal in BATCH_SIGNALS:
                value = per_batch[signal]
                if value is None:
                    continue
                hits = feed(watch, [value], [positions[-1]])
            else:
                values = (
                    (~metrics["hit10"]).to(torch.float64)
                    if signal == "miss10"
                    else metrics[signal].to(torch.float64)
                )
                hits = feed(watch, values.tolist(), positions)
            ts_of = dict(zip(positions, eb.ts.tolist()))
            alarms.extend((watch.spec.name, signal, p, ts_of[p]) for p in hits)
        return alarms

    # -- resume -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter.state(),
            "model": None if self.model.trainable else self.model,
            "history": self.history.state(),
            "detectors": [w.detector for w in self.watches],
            "next_idx": self.next_idx,
            "next_batch_id": self.next_batch_id,
            "n_replayed": self.n_replayed,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if not self.model.trainable:
            self.model = state["model"]
            self.adapter.model = self.model
        else:
            self.adapter.load_state(state["adapter"])
        self.history.load_state(state["history"])
        for watch, det in zip(self.watches, state["detectors"]):
            watch.detector = det
        self.next_idx = int(state["next_idx"])
        self.next_batch_id = int(state["next_batch_id"])
        self.n_replayed = int(state.get("n_replayed", 0))


def _catalogue(known: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """The catalogue of each request of a micro-batch, as a shared mask plus exceptions.

    An item is in request r's catalogue when some event before r revealed it: an event before
    the micro-batch, or an earlier event of the same micro-batch (its timestamp is <= r's).
    Returns the items unknown to every request of the batch (`outside`, (V,) bool) and, for the
    items first revealed inside the batch, the batch position of that first event (they are
    unknown up to and including that request, known after it).
    """
    first: dict[int, int] = {}
    for pos, item in enumerate(targets.tolist()):
        if not known[item] and item not in first:
            first[item] = pos
    outside = ~known
    if first:
        outside = outside.copy()
        outside[list(first)] = False
    return outside, first


def _with_targets(batch: SeqBatch, items: np.ndarray) -> SeqBatch:
    return SeqBatch(
        items=batch.items,
        times=batch.times,
        lengths=batch.lengths,
        request_times=batch.request_times,
        targets=torch.from_numpy(np.asarray(items, dtype=np.int64)),
    )


def _runs_without_repeats(users: np.ndarray) -> Iterator[tuple[int, int]]:
    """Split positions into consecutive runs in which no user appears twice."""
    start, present = 0, set[int]()
    for pos, user in enumerate(users.tolist()):
        if user in present:
            yield start, pos
            start, present = pos, set()
        present.add(user)
    if start < len(users):
        yield start, len(users)
