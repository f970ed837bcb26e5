"""The prequential replay loop: micro-batches of consecutive events, each adapted, scored, revealed.

For every micro-batch, in this order and only here (`ReplayEngine.step`):

1. **inputs**: each request's causal history and its request time; never its target.
2. **adapt**: the policy's test-time adaptation (`streamsim.adapt.Adapter`) on the inputs of
   every user's *first* request in the micro-batch. Their histories hold only events revealed
   before the micro-batch, so every event adaptation sees is no later than the micro-batch's
   earliest request.
3. **score**, in waves: wave k holds each user's (k+1)-th request of the micro-batch. A wave is
   scored after the earlier waves were scored and revealed to the histories, so a user's second
   request in a session sees the first one (an earlier event) and nothing later. Items unknown at
   request time and, with `exclude_seen`, the user's own past items are set to -inf; the target's
   rank is recorded (`streamsim.ranking`). "Known at request time" is per request: an item
   revealed by an earlier event of the same micro-batch is in the catalogue of the later requests,
   never of its own or earlier ones. Then ``reset`` restores the weights (the adapter's
   ``with`` block ends here).
4. **reveal**: the last wave joins the histories; count models `observe` the micro-batch; an
   optional online supervised update learns from it.
5. **detect**: river detectors are fed the batch's per-event and per-batch signals (the
   label-free ones: the test-time loss on the adapted inputs before any step, the mean Δ_{n+1};
   their time is counted in this stage). A ``reset_on_alarm`` policy restores the pretrained
   test-time parameters when its detector fires (`Adapter.on_alarms`): the next micro-batch
   starts from θ₀. (The diagnostic ``reset_at_drifts`` policy restores θ₀ before stage 2 of
   every micro-batch that holds a ground-truth drift start: an oracle, never deployable.)
6. **probe** (every `probe_every` of the replay, when the scenario has one): the forgetting
   probe (`streamsim.probe`) re-scores its fixed pre-replay requests with the weights the next
   micro-batch will start from; the first probe, before micro-batch 0, gives the θ₀ level.

Consequently each request's input holds exactly the events before it, and for models that read
only the request's own history (every neural model under policy ``none``) the ranks are the same
whatever the batch size: the naive one-event-at-a-time reference in the tests. What depends on
the batch size is when learning happens: count models (`observe`), online updates and test-time
adaptation use a micro-batch's events only after the whole micro-batch was scored.

`step` returns a `streamsim.records.StepResult`: the rows of the run tables, nothing more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from models.base import Recommender, SeqBatch
from streamsim import config
from streamsim.adapt import Adapter, AdaptStats, PolicySpec
from streamsim.drift import BATCH_SIGNALS, DetectorSpec, Watch, feed, make_detector
from streamsim.errors import ScenarioError
from streamsim.history import HistoryBuffer
from streamsim.online import OnlineLearner
from streamsim.probe import ProbeScore, SourceProbe
from streamsim.ranking import gini, marginal_entropy, rank_metrics, target_ranks, topk_entropy
from streamsim.records import Alarm, BatchResult, EventRecords, StepResult
from streamsim.recurrent_state import RecurrentStateCache
from streamsim.rng import batch_seed


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySpec:
    """[replay]: micro-batching of the replay period and what the engine measures on the way."""

    batch_events: int = 256  # consecutive events per micro-batch (when batch_window_s is None)
    batch_window_s: int | None = None  # or: a micro-batch per time window of this many seconds
    max_batch_events: int = 4096  # cap on a time-window batch
    exclude_seen: bool = False  # mask items already in the user's history (-inf); recorded
    max_events: int | None = None  # replay only the first N events of the replay period
    # sanity check of the tie order: replay (and warm up) events with equal timestamps in a
    # seeded random order instead of the source-row order; compare the run with the default one
    tie_shuffle_seed: int | None = None
    # per batch, the test-time loss and mean Δ_{n+1} for detectors and the dashboard (one extra
    # forward pass; false: skip it, e.g. to time bare inference)
    label_free_signals: bool = True
    # per batch of an adapting policy, what its step changed: the inputs scored once more with
    # the weights before the step (one extra forward pass; false: skip it)
    step_effects: bool = True
    # forgetting probe (`streamsim.probe`): this many validation-window requests re-scored with
    # the current weights every `probe_every` (fraction of the replayed events); 0 disables it
    probe_events: int = 1000
    probe_every: float = 0.1
    # score a frozen recurrent model (policy none) from each user's cached state in O(1) instead
    # of re-running their history (`streamsim.recurrent_state`); other policies recompute
    recurrent_state: bool = False

    @classmethod
    def from_table(cls, table: Any, where: str) -> ReplaySpec:
        spec = cls(**config.bind(cls, table, where))
        for key in ("batch_events", "batch_window_s", "max_batch_events", "max_events"):
            config.at_least_zero(getattr(spec, key), f"{where} key {key!r}", strict=True)
        config.at_least_zero(spec.probe_events, f"{where} key 'probe_events'")
        if not 0 < spec.probe_every <= 1:
            msg = (
                f"{where} key 'probe_every': expected a fraction of the replay in (0, 1],"
                f" got {spec.probe_every!r}"
            )
            raise ScenarioError(msg)
        return spec


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

    @property
    def waves(self) -> np.ndarray:
        """(B,) how many earlier requests of the same user the micro-batch holds (0, 1, ...)."""
        order = np.argsort(self.users, kind="stable")
        sorted_users = self.users[order]
        starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        out = np.empty(len(order), dtype=np.int64)
        out[order] = np.arange(len(order)) - group_start
        return out


def micro_batches(
    events: Iterator[pa.RecordBatch], spec: ReplaySpec, *, first_batch_id: int = 0
) -> Iterator[EventBatch]:
    """Group events (replay order) into micro-batches of consecutive events.

    Count mode: `batch_events` events each. Window mode (`batch_window_s`): a batch holds the
    events within `batch_window_s` seconds of its first event, at most `max_batch_events`. A user
    may have several requests in one micro-batch (sessions); `ReplayEngine.step` scores them in
    waves so that each sees the earlier ones only after they were scored.
    """
    batch_id = first_batch_id
    cols = ("idx", "user_id", "item_id", "ts")
    buf = [np.zeros(0, dtype=np.int64) for _ in cols]
    limit = spec.batch_events if spec.batch_window_s is None else spec.max_batch_events

    def take(n: int) -> EventBatch:
        nonlocal buf, batch_id
        out = EventBatch(batch_id, *(a[:n] for a in buf))
        buf = [a[n:] for a in buf]
        batch_id += 1
        return out

    def size_of_next() -> int | None:
        """Events in the next batch, or None when the buffer may still be missing some."""
        n = len(buf[0])
        if spec.batch_window_s is None:
            return limit if n >= limit else None
        ts = buf[3]
        inside = int(np.searchsorted(ts, ts[0] + spec.batch_window_s, side="left"))
        if inside >= limit:
            return limit
        return inside if inside < n else None

    for record in events:
        fresh = [record.column(c).to_numpy().astype(np.int64) for c in cols]
        buf = [np.concatenate([a, b]) for a, b in zip(buf, fresh, strict=True)]
        while len(buf[0]) and (n := size_of_next()) is not None:
            yield take(n)
    while len(buf[0]):
        yield take(size_of_next() or len(buf[0]))


class ReplayEngine:
    """The state of one replay (model, adapter, histories, detectors) and its per-batch step.

    `drift_starts`: replay indices of ground-truth drift starts, for the diagnostic
    ``reset_at_drifts`` policy only; `reset_batches`: the micro-batches after which a
    ``reset_random`` policy restores θ₀.
    """

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
        probe: SourceProbe | None = None,
        drift_starts: tuple[int, ...] = (),
        reset_batches: frozenset[int] = frozenset(),
    ) -> None:
        self.model = model.eval()
        self.policy = policy
        self.spec = spec
        self.seed = seed
        # test-time adaptation (with the policy's sample filter and resets) and online learning
        self.adapter = Adapter(
            model, policy, drift_starts=drift_starts, reset_batches=reset_batches, seed=seed
        )
        self.learner = (
            OnlineLearner(model, lr=policy.online_lr, steps=policy.online_steps)
            if policy.online
            else None
        )
        self.history = HistoryBuffer(n_users=n_users, n_items=n_items, max_len=model.max_len)
        # frozen weights only: a cached state is θ₀'s (`streamsim.recurrent_state`)
        frozen = policy.tta == "none" and not policy.online
        self.cache = (
            RecurrentStateCache(model, n_users=n_users) if spec.recurrent_state and frozen else None
        )
        self.watches: list[Watch] = [make_detector(d, seed=seed) for d in detectors]
        self.next_idx = 0  # first replay index not processed yet
        self.next_batch_id = 0
        self.n_replayed = 0  # events stepped through (the resume position under tie shuffling)
        self.probe = probe
        self.probe_base: ProbeScore | None = None  # θ₀ on the probe (before batch 0)

    # -- warm-up ----------------------------------------------------------------------------------
    def warm_up(self, events: Iterator[pa.RecordBatch], *, observe_from: int = 0) -> None:
        """Reveal the events before the replay period (histories; count models from
        `observe_from` on)."""
        for record in events:
            users = record.column("user_id").to_numpy().astype(np.int64)
            items = record.column("item_id").to_numpy().astype(np.int64)
            ts = record.column("ts").to_numpy().astype(np.int64)
            idx = record.column("idx").to_numpy()
            if not self.model.trainable and not self.model.observes_histories:
                keep = idx >= observe_from  # one call: no history to keep in step with
                self.model.observe(_targets_only(items[keep], ts[keep]))
                self.history.extend(users, items, ts)
            elif not self.model.trainable:
                for lo, hi in _runs_without_repeats(users):
                    if idx[hi - 1] >= observe_from:
                        keep = idx[lo:hi] >= observe_from
                        sel = np.arange(lo, hi)[keep]
                        batch = self.history.batch(users[sel], ts[sel])
                        self.model.observe(_with_targets(batch, items[sel]))
                    self.history.extend(users[lo:hi], items[lo:hi], ts[lo:hi])
            else:
                self.history.extend(users, items, ts)
                if self.cache is not None:
                    self.cache.count(users)
            self.next_idx = int(idx[-1]) + 1
        if self.cache is not None:  # the states after the warm-up, in one pass
            self.cache.rebuild(self.history)

    # -- one micro-batch: the stages, in order ----------------------------------------------------
    def step(self, eb: EventBatch) -> StepResult:
        seconds = {"adapt": 0.0, "score": 0.0, "reveal": 0.0, "detect": 0.0, "probe": 0.0}
        if self.probe is not None and self.probe_base is None:  # θ₀, after the warm-up
            t0 = time.perf_counter()
            self.probe_base = self.probe.score(self.model)
            seconds["probe"] += time.perf_counter() - t0
        users, targets = eb.users, torch.from_numpy(eb.items)
        waves = eb.waves
        first = np.flatnonzero(waves == 0)  # every user's first request in the batch
        # 1. inputs of the first requests: histories revealed before the micro-batch, request
        #    times, never targets; all their events are <= the batch's earliest request
        inputs = self.history.batch(users[first], eb.ts[first])
        outside, first_seen = _catalogue(self.history.known, eb.items)
        is_cold = np.fromiter(  # unknown at its request: never revealed before it
            (first_seen.get(i) == pos for pos, i in enumerate(eb.items.tolist())),
            dtype=bool,
            count=len(eb),
        )
        # 2. adapt on those inputs; 3. score with the adapted weights. Leaving the block
        #    restores a reset policy's weights (and applies a periodic reset).
        t0 = time.perf_counter()
        with self.adapter.adapted(
            inputs,
            outside=torch.from_numpy(~self.history.known),
            batch_id=eb.batch_id,
            span=(int(eb.idx[0]), int(eb.idx[-1])),
            # the diagnostic oracle reads the first requests' targets before they are scored
            targets=targets[first] if self.policy.diagnostic else None,
            measure=self.spec.step_effects,
        ) as tts:
            seconds["adapt"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            signals = self._label_free_signals(inputs, tts.stats)  # with the adapted weights
            seconds["detect"] += time.perf_counter() - t0
            scores, is_repeat, wave_inputs = self._score_in_waves(
                eb, inputs, first, seconds, before=tts.scores_before
            )
            t0 = time.perf_counter()
            _mask_catalogue(scores, outside, first_seen)
            ranks = target_ranks(scores, targets)
            metrics = rank_metrics(ranks)
            top10 = scores.topk(min(10, scores.shape[1]), dim=1).indices
            per_request_entropy = topk_entropy(scores)  # (B,), label-free
            signals["topk_entropy"] = float(per_request_entropy.mean())
            metrics["entropy10"] = per_request_entropy / math.log(10)
            catalogue = int((~outside).sum())  # items known to some request of the batch
            signals["coverage"] = float(torch.unique(top10).numel()) / max(catalogue, 1)
            known = torch.from_numpy(~outside)
            rec_counts = torch.bincount(top10.reshape(-1), minlength=scores.shape[1])[known]
            signals["rec_gini"] = gini(rec_counts)
            signals["top1_entropy"] = marginal_entropy(top10[:, 0])
        seconds["score"] += time.perf_counter() - t0
        effects = _step_effects(tts.scores_before, scores, first, outside, first_seen, targets)
        adapt = tts.stats
        # 4. reveal: the last wave's histories, the catalogue, count models, online update
        t0 = time.perf_counter()
        last_rows = wave_inputs[-1][0]
        self._reveal(users[last_rows], eb.items[last_rows], eb.ts[last_rows])
        revealed = _with_targets(_in_batch_order(wave_inputs, len(eb)), eb.items)
        self.model.observe(revealed)
        backward = adapt.backward_passes
        if self.learner is not None:
            backward += self.learner.learn(revealed, seed=batch_seed(self.seed, eb.batch_id))
        seconds["reveal"] += time.perf_counter() - t0
        # 5. detect (a reset_on_alarm policy restores θ₀ before the next batch)
        t0 = time.perf_counter()
        alarms = self._detect(eb, metrics, signals)
        restored = self.adapter.on_alarms(f"{a.detector}:{a.signal}" for a in alarms)
        seconds["detect"] += time.perf_counter() - t0
        # 6. probe: the weights the next micro-batch starts from, on the source period
        probe: dict[str, float] = {}
        if self.probe is not None and self.probe.due(self.n_replayed, self.n_replayed + len(eb)):
            t0 = time.perf_counter()
            probe = self.probe.score(self.model).summary(self.probe_base)
            seconds["probe"] += time.perf_counter() - t0
        self.next_idx = int(eb.idx[-1]) + 1
        self.next_batch_id = eb.batch_id + 1
        self.n_replayed += len(eb)
        events = EventRecords(
            idx=eb.idx,
            batch_id=np.full(len(eb), eb.batch_id, dtype=np.int64),
            ts=eb.ts,
            user_id=eb.users,
            item_id=eb.items,
            rank=ranks.numpy(),
            hit10=metrics["hit10"].numpy(),
            hit50=metrics["hit50"].numpy(),
            ndcg10=metrics["ndcg10"].numpy(),
            rr10=metrics["rr10"].numpy(),
            is_repeat=is_repeat,
            is_cold=is_cold,
            top1=top10[:, 0].numpy(),
        )
        batch = BatchResult(
            batch_id=eb.batch_id,
            first_idx=int(eb.idx[0]),
            last_idx=int(eb.idx[-1]),
            n_events=len(eb),
            t_start=int(eb.ts[0]),
            t_end=int(eb.ts[-1]),
            tta_loss_before=adapt.loss_before,
            tta_loss_after=adapt.loss_after,
            filtered_share=adapt.filtered_share,
            tta_samples_saved=adapt.samples_saved,
            tta_skipped_steps=adapt.skipped_steps,
            tta_reset=tts.restored or restored,
            tta_step_norm=adapt.step_norm,
            tta_step_rel=adapt.step_rel,
            tta_top10_changed=effects[0],
            tta_rank_changed=effects[1],
            tta_hit10_flips=effects[2],
            param_distance=self.adapter.param_distance(),
            backward_passes=backward,
            probe_ndcg10=probe.get("ndcg10"),
            probe_hr10=probe.get("hr10"),
            forgetting_ndcg10=probe.get("forgetting"),
            forgetting_se=probe.get("forgetting_se"),
            probe_top1_flip=probe.get("top1_flip"),
            time_adapt=seconds["adapt"],
            time_score=seconds["score"],
            time_reveal=seconds["reveal"],
            time_detect=seconds["detect"],
            time_probe=seconds["probe"],
        )
        return StepResult(events=events, batch=batch, signals=signals, alarms=tuple(alarms))

    def _score_in_waves(
        self,
        eb: EventBatch,
        inputs: SeqBatch,
        first: np.ndarray,
        seconds: dict[str, float],
        *,
        before: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, np.ndarray, list[tuple[np.ndarray, SeqBatch]]]:
        """Scores of every request, wave by wave: a user's k-th request of the batch is scored
        after their (k-1)-th was scored and revealed to the histories. Returns the (B, V) scores
        (catalogue masking is the caller's), which targets repeat a history item, and each
        wave's rows and inputs. `before` (the first wave's scores before a test-time step) gets
        the same ``exclude_seen`` mask as the first wave, in place."""
        users, waves = eb.users, eb.waves
        last_wave = int(waves.max())
        scores = torch.empty(0)
        is_repeat = np.zeros(len(eb), dtype=bool)
        wave_inputs: list[tuple[np.ndarray, SeqBatch]] = []
        for wave in range(last_wave + 1):
            rows = first if wave == 0 else np.flatnonzero(waves == wave)
            t0 = time.perf_counter()
            batch = inputs if wave == 0 else self.history.batch(users[rows], eb.ts[rows])
            is_repeat[rows] = [
                self.history.has_seen(u, i)
                for u, i in zip(users[rows].tolist(), eb.items[rows].tolist())
            ]
            with torch.no_grad():
                if self.cache is not None:  # from each user's cached state
                    part = self.cache.score(users[rows], batch)
                else:
                    part = self.model.score(batch).clone()  # (rows, V)
            if self.spec.exclude_seen:
                for r, user in enumerate(users[rows].tolist()):
                    part[r, self.history.seen_items(user)] = float("-inf")
                    if wave == 0 and before is not None:
                        before[r, self.history.seen_items(user)] = float("-inf")
            if wave == 0:
                scores = part.new_empty(len(eb), part.shape[1])
            scores[torch.from_numpy(rows)] = part
            wave_inputs.append((rows, batch))
            seconds["score"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if wave < last_wave:  # histories only; learning waits for the whole batch
                self._reveal(users[rows], eb.items[rows], eb.ts[rows])
            seconds["reveal"] += time.perf_counter() - t0
        return scores, is_repeat, wave_inputs

    def _reveal(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray) -> None:
        """Scored events join the histories (and the cached recurrent states)."""
        self.history.extend(users, items, ts)
        if self.cache is not None:
            self.cache.reveal(users, items, ts)

    def _label_free_signals(self, inputs: SeqBatch, adapt: AdaptStats) -> dict[str, float | None]:
        """The test-time loss before adaptation and the mean Δ_{n+1}, if the model has them.

        One extra forward pass per batch (`Recommender.test_time_signals`), skipped with
        ``[replay] label_free_signals = false``; an adapting policy's own loss before its step
        is reused as the signal.
        """
        if not (self.model.has_test_time_loss and self.spec.label_free_signals):
            return {}
        signals = self.model.test_time_signals(inputs)
        loss = adapt.loss_before if adapt.loss_before is not None else signals["loss"]
        return {"tta_loss": loss, "delta_next_mean": signals.get("delta_next")}

    def _detect(
        self,
        eb: EventBatch,
        metrics: dict[str, torch.Tensor],
        signals: dict[str, float | None],
    ) -> list[Alarm]:
        alarms: list[Alarm] = []
        positions = eb.idx.tolist()
        for watch in self.watches:
            signal = watch.spec.signal
            if signal in BATCH_SIGNALS:
                value = signals.get(signal)
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
            alarms.extend(Alarm(watch.spec.name, signal, p, ts_of[p]) for p in hits)
        return alarms

    # -- resume -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resumed replay needs, as tensors, numbers and plain containers only, so
        that it loads with ``torch.load(weights_only=True)`` (no pickled objects): the weights
        and optimizer states, a count model's counts, the histories, every detector's inputs
        (detectors are rebuilt by feeding them again), the position and the probe's θ₀ level."""
        base = self.probe_base
        return {
            "adapter": self.adapter.state(),
            "learner": self.learner.state() if self.learner is not None else None,
            "counts": None if self.model.trainable else self.model.state_dict(),
            "history": self.history.state(),
            "recurrent_state": None if self.cache is None else self.cache.state(),
            "detectors": [torch.tensor(w.fed, dtype=torch.float64) for w in self.watches],
            "next_idx": self.next_idx,
            "next_batch_id": self.next_batch_id,
            "n_replayed": self.n_replayed,
            "probe_base": None if base is None else base.to_tensors(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if not self.model.trainable:
            self.model.load_state_dict(state["counts"])
        else:
            self.adapter.load_state(state["adapter"])
            if self.learner is not None and state.get("learner") is not None:
                self.learner.load_state(state["learner"])
        self.history.load_state(state["history"])
        if self.cache is not None:
            self.cache.load_state(state["recurrent_state"])
        self.watches = [
            w.rebuilt(values.tolist()) for w, values in zip(self.watches, state["detectors"])
        ]
        self.next_idx = int(state["next_idx"])
        self.next_batch_id = int(state["next_batch_id"])
        self.n_replayed = int(state["n_replayed"])
        base = state["probe_base"]
        self.probe_base = None if base is None else ProbeScore.from_tensors(base)


def _mask_catalogue(scores: torch.Tensor, outside: np.ndarray, first_seen: dict[int, int]) -> None:
    """-inf, in place, for items no request of the batch knows and, for an item first revealed
    inside the batch, for the requests up to and including that one (`_catalogue`)."""
    scores[:, torch.from_numpy(outside)] = float("-inf")
    for item, pos in first_seen.items():  # new in the batch: known from the next request on
        scores[: pos + 1, item] = float("-inf")


def _step_effects(
    before: torch.Tensor | None,
    after: torch.Tensor,
    first: np.ndarray,
    outside: np.ndarray,
    first_seen: dict[int, int],
    targets: torch.Tensor,
) -> tuple[float | None, float | None, int | None]:
    """What the test-time step changed on the requests it was taken on (each user's first of
    the batch): the share of top-10 lists that differ, the share of target ranks that moved,
    and the number of targets that entered or left the top 10. (None, None, None) without the
    scores before the step."""
    if before is None:
        return None, None, None
    rows = torch.from_numpy(first)
    full = after.new_full(after.shape, float("-inf"))  # `before` in batch rows, for the mask
    full[rows] = before
    _mask_catalogue(full, outside, first_seen)
    pre, post = full[rows], after[rows]
    k = min(10, after.shape[1])
    top_pre, top_post = pre.topk(k, dim=1).indices, post.topk(k, dim=1).indices
    changed = float((top_pre != top_post).any(dim=1).double().mean())
    rank_pre, rank_post = target_ranks(pre, targets[rows]), target_ranks(post, targets[rows])
    moved = float((rank_pre != rank_post).double().mean())
    flips = int(((rank_pre <= 10) != (rank_post <= 10)).sum())
    return changed, moved, flips


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


def _in_batch_order(parts: list[tuple[np.ndarray, SeqBatch]], n: int) -> SeqBatch:
    """The inputs of every request of a micro-batch, rows back in batch order."""
    if len(parts) == 1:
        return parts[0][1]
    rows = torch.from_numpy(np.concatenate([r for r, _ in parts]))
    order = torch.empty(n, dtype=torch.long)
    order[rows] = torch.arange(n)
    width = max(b.items.shape[1] for _, b in parts)

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(b, name) for _, b in parts])[order]

    assert all(b.items.shape[1] == width for _, b in parts), "histories share max_len"
    return SeqBatch(
        items=cat("items"),
        times=cat("times"),
        lengths=cat("lengths"),
        request_times=cat("request_times"),
    )


def _with_targets(batch: SeqBatch, items: np.ndarray) -> SeqBatch:
    return SeqBatch(
        items=batch.items,
        times=batch.times,
        lengths=batch.lengths,
        request_times=batch.request_times,
        targets=torch.from_numpy(np.asarray(items, dtype=np.int64)),
    )


def _targets_only(items: np.ndarray, ts: np.ndarray) -> SeqBatch:
    """Revealed events as a batch without histories (for models that do not read them)."""
    n = len(items)
    empty = torch.zeros(n, 1, dtype=torch.int64)
    return SeqBatch(
        empty, empty.clone(), torch.zeros(n, dtype=torch.int64), torch.from_numpy(ts.copy()),
        torch.from_numpy(items.astype(np.int64)),
    )  # fmt: skip


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
