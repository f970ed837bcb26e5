"""The forgetting probe (EATA's clean-accuracy test, applied to a replay).

A fixed sample of requests from the validation window (before the replay, never a gradient
target in pretraining: it only chose the early-stopping epoch) is re-scored with the model's
*current* state at regular points of a replay. Forgetting(t) = NDCG@10(θ₀, probe) −
NDCG@10(θ_t, probe): positive when adapting to the stream lost what the pretrained model knew
about the source period. It is a paired mean over the same requests, so it comes with its
standard error (of the per-request differences): small probes are noisy, and the SE says how
much. Under ``none`` and ``reset`` it is 0 by construction (the weights after
every micro-batch are θ₀), which the tests check; under ``continual`` and ``online`` it measures
what carrying the updates forward costs on the past.

The probe's histories, request times and catalogue are those of its own time (the examples that
pretraining validated on); scoring reads no replay event, so it cannot leak. Count models
(popularity, transition) keep counting during the replay, so their probe moves too: read it as
"how the current state ranks the source period".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np
import torch

from models.base import Recommender
from streamsim.ranking import rank_metrics, target_ranks
from streamsim.splits import Split
from streamsim.training_examples import Examples, build_examples

PROBE_BATCH = 512


@dataclass(frozen=True)
class ProbeScore:
    """The probe scored by one state of the model: per-request NDCG@10 and hit@10."""

    ndcg10: np.ndarray  # (N,) float64
    hit10: np.ndarray  # (N,) bool
    top1: np.ndarray  # (N,) int64: the top-ranked item of each probe request

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The scores as tensors (the engine's resume state holds no pickled objects)."""
        return {k: torch.from_numpy(getattr(self, k).copy()) for k in ("ndcg10", "hit10", "top1")}

    @classmethod
    def from_tensors(cls, state: dict[str, torch.Tensor]) -> ProbeScore:
        return cls(state["ndcg10"].numpy(), state["hit10"].numpy(), state["top1"].numpy())

    def summary(self, base: ProbeScore | None = None) -> dict[str, float]:
        """Means, and against `base` (θ₀) the forgetting with its paired standard error and the
        share of probe requests whose top-1 item changed (ASR's flip rate)."""
        out = {"ndcg10": float(self.ndcg10.mean()), "hr10": float(self.hit10.mean())}
        if base is not None:
            diff = base.ndcg10 - self.ndcg10
            out["forgetting"] = float(diff.mean())
            out["forgetting_se"] = (
                float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else math.nan
            )
            out["top1_flip"] = float((base.top1 != self.top1).mean())
        return out


@dataclass(frozen=True)
class SourceProbe:
    """Held-out pre-replay requests, scored every `every_events` replayed events."""

    examples: Examples
    every_events: int

    def __len__(self) -> int:
        return len(self.examples)

    def due(self, n_before: int, n_after: int) -> bool:
        """Whether a probe point lies in (n_before, n_after] replayed events."""
        return n_after // self.every_events > n_before // self.every_events

    @torch.no_grad()
    def score(self, model: Recommender) -> ProbeScore:
        """Full-catalogue ranks of the probe's targets under `model` as it is now (eval mode, no
        adaptation; the catalogue is the items known at the probe's time)."""
        model.eval()
        outside = torch.from_numpy(~self.examples.known)
        ndcg, hit, top1 = [], [], []
        for batch in self.examples.batches(PROBE_BATCH):
            scores = model.score(batch.without_targets()).clone()
            scores[:, outside] = float("-inf")
            assert batch.targets is not None
            m = rank_metrics(target_ranks(scores, batch.targets))
            ndcg.append(m["ndcg10"].numpy())
            hit.append(m["hit10"].numpy())
            top1.append(scores.argmax(dim=1).numpy())
        return ProbeScore(np.concatenate(ndcg), np.concatenate(hit), np.concatenate(top1))


def build_probe(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    split: Split,
    *,
    probe_events: int,
    probe_every: float,
    max_len: int,
    replay_events: int,
    seed: int,
) -> SourceProbe | None:
    """The scenario's probe: `probe_events` validation requests drawn with an owned generator
    (seeded by the run seed), or None when disabled or the window is empty.

    `replay_events` (the events this replay will step through) and `probe_every` (a fraction of
    them) give the spacing of the probe points ([replay] probe_events, probe_every).
    """
    if probe_events == 0 or split.valid.stop <= split.valid.start or replay_events == 0:
        return None
    pool = build_examples(
        con, dataset, max_len=max_len, collect_start=split.valid.start,
        collect_stop=split.valid.stop, history_start=split.pretrain.start,
    )  # fmt: skip
    if len(pool) == 0:
        return None
    rng = np.random.default_rng([seed, 0x9E0BE])  # its own stream: independent of training's
    n = min(probe_events, len(pool))
    pick = np.sort(rng.choice(len(pool), size=n, replace=False))
    examples = Examples(
        items=pool.items[pick],
        times=pool.times[pick],
        lengths=pool.lengths[pick],
        request_times=pool.request_times[pick],
        targets=pool.targets[pick],
        known=pool.known,
    )
    every = max(1, round(probe_every * replay_events))
    return SourceProbe(examples, every)
