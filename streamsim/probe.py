"""The forgetting probe (PROTOCOL.md §6.2a, EATA's clean-accuracy test).

A fixed sample of requests from the validation window (before the replay, never a gradient
target in pretraining: it only chose the early-stopping epoch) is re-scored with the model's
*current* state at regular points of a replay. Forgetting(t) = NDCG@10(θ₀, probe) −
NDCG@10(θ_t, probe): positive when adapting to the stream lost what the pretrained model knew
about the source period. Under ``none`` and ``reset`` it is 0 by construction (the weights after
every micro-batch are θ₀), which the tests check; under ``continual`` and ``online`` it measures
what carrying the updates forward costs on the past.

The probe's histories, request times and catalogue are those of its own time (the examples that
pretraining validated on); scoring reads no replay event, so it cannot leak. Count models
(popularity, transition) keep counting during the replay, so their probe moves too: read it as
"how the current state ranks the source period".
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from models.base import Recommender
from streamsim.examples import Examples, build_examples
from streamsim.scenario import ReplaySpec
from streamsim.splits import Split
from streamsim.train import evaluate_examples

PROBE_BATCH = 512


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

    def score(self, model: Recommender) -> dict[str, float]:
        """Full-catalogue NDCG@10 and HR@10 of `model` as it is now (no adaptation, no grad)."""
        m = evaluate_examples(model, self.examples, batch_size=PROBE_BATCH)
        return {"ndcg10": m["ndcg@10"], "hr10": m["hr@10"]}


def build_probe(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    split: Split,
    spec: ReplaySpec,
    *,
    max_len: int,
    replay_events: int,
    seed: int,
) -> SourceProbe | None:
    """The scenario's probe: `spec.probe_events` validation requests drawn with an owned
    generator (seeded by the run seed), or None when disabled or the window is empty.

    `replay_events` (the events this replay will step through) and `spec.probe_every` (a
    fraction of them) give the spacing of the probe points.
    """
    if spec.probe_events == 0 or split.valid.stop <= split.valid.start or replay_events == 0:
        return None
    pool = build_examples(
        con, dataset, max_len=max_len, collect_start=split.valid.start,
        collect_stop=split.valid.stop,
    )  # fmt: skip
    if len(pool) == 0:
        return None
    rng = np.random.default_rng([seed, 0x9E0BE])  # its own stream: independent of training's
    n = min(spec.probe_events, len(pool))
    pick = np.sort(rng.choice(len(pool), size=n, replace=False))
    examples = Examples(
        items=pool.items[pick],
        times=pool.times[pick],
        lengths=pool.lengths[pick],
        request_times=pool.request_times[pick],
        targets=pool.targets[pick],
        known=pool.known,
    )
    every = max(1, round(spec.probe_every * replay_events))
    return SourceProbe(examples, every)
